// netlink shims (see CLinuxNet.h).
#ifndef CLINUXNET_NETLINK_SHIM_H
#define CLINUXNET_NETLINK_SHIM_H
#endif
