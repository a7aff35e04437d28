// tap shims (see CLinuxNet.h).
#ifndef CLINUXNET_TAP_SHIM_H
#define CLINUXNET_TAP_SHIM_H
#endif
