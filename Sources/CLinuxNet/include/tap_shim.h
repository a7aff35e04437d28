// tap shims (see CLinuxNet.h): the TUN/TAP ioctls and the interface ioctls a TAP port needs.
// The ioctl request numbers are function-like macros (_IOW) and struct ifreq is a union, neither of
// which Swift imports well, so each operation is one function here. Every function returns what
// the underlying call returns (-1 with errno set on failure) and does nothing else.
#ifndef CLINUXNET_TAP_SHIM_H
#define CLINUXNET_TAP_SHIM_H

#include <stdint.h>

/// IFNAMSIZ: bytes of an interface name buffer, terminating NUL included.
#define CLinuxNet_IFNAMSIZ 16

/// TUN_F_* offload bits for `CLinuxNet_tap_set_offload`. USO (UDP segmentation, Linux 6.2) is
/// defined here because older kernel headers do not have it; the kernel rejects it with EINVAL
/// when it does not know it.
#define CLinuxNet_TUN_F_CSUM 0x01u
#define CLinuxNet_TUN_F_TSO4 0x02u
#define CLinuxNet_TUN_F_TSO6 0x04u
#define CLinuxNet_TUN_F_TSO_ECN 0x08u
#define CLinuxNet_TUN_F_USO4 0x20u
#define CLinuxNet_TUN_F_USO6 0x40u

/// TUNSETIFF with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR on an open /dev/net/tun descriptor.
/// `name` may be empty or a pattern ("tap%d"); the name the kernel chose is written to
/// `out_name` (CLinuxNet_IFNAMSIZ bytes).
int CLinuxNet_tap_attach(int fd, const char *name, char *out_name);

/// TUNSETVNETHDRSZ: the size of the virtio_net_hdr in front of every frame on the descriptor.
int CLinuxNet_tap_set_vnet_header_size(int fd, int size);

/// TUNSETOFFLOAD: which offloaded frames (TUN_F_*) the reader of the descriptor accepts.
int CLinuxNet_tap_set_offload(int fd, unsigned int flags);

/// SIOCGIFFLAGS on `sock` (any socket) for interface `name`; flags written to `flags`.
int CLinuxNet_tap_get_flags(int sock, const char *name, short *flags);

/// SIOCSIFFLAGS on `sock` for interface `name`.
int CLinuxNet_tap_set_flags(int sock, const char *name, short flags);

/// SIOCSIFMTU on `sock` for interface `name`.
int CLinuxNet_tap_set_mtu(int sock, const char *name, int mtu);

/// SIOCGIFMTU on `sock` for interface `name`.
int CLinuxNet_tap_get_mtu(int sock, const char *name, int *mtu);

/// SIOCSIFHWADDR (ARPHRD_ETHER) on `sock` for interface `name`; `mac` is 6 bytes.
int CLinuxNet_tap_set_mac(int sock, const char *name, const uint8_t *mac);

/// SIOCGIFHWADDR on `sock` for interface `name`; 6 bytes written to `mac`.
int CLinuxNet_tap_get_mac(int sock, const char *name, uint8_t *mac);

/// IFF_UP, as a value Swift can use without importing <net/if.h> flag enums.
#define CLinuxNet_IFF_UP 0x1
#define CLinuxNet_IFF_RUNNING 0x40
#define CLinuxNet_IFF_LOWER_UP 0x10000

#endif
