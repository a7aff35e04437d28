// packet shims (see CLinuxNet.h).
#ifndef CLINUXNET_PACKET_SHIM_H
#define CLINUXNET_PACKET_SHIM_H
#endif
