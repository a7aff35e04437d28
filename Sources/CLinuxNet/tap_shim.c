// tap shims: see include/tap_shim.h. No logic: fill a struct ifreq, make one ioctl.
#include "tap_shim.h"

#include <string.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <linux/if_tun.h>

static void CLinuxNet_fill_name(struct ifreq *ifr, const char *name) {
    memset(ifr, 0, sizeof(*ifr));
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
}

int CLinuxNet_tap_attach(int fd, const char *name, char *out_name) {
    struct ifreq ifr;
    CLinuxNet_fill_name(&ifr, name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    int r = ioctl(fd, TUNSETIFF, &ifr);
    if (r == 0) {
        memcpy(out_name, ifr.ifr_name, IFNAMSIZ);
        out_name[IFNAMSIZ - 1] = 0;
    }
    return r;
}

int CLinuxNet_tap_set_vnet_header_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size);
}

int CLinuxNet_tap_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags);
}

int CLinuxNet_tap_get_flags(int sock, const char *name, short *flags) {
    struct ifreq ifr;
    CLinuxNet_fill_name(&ifr, name);
    int r = ioctl(sock, SIOCGIFFLAGS, &ifr);
    if (r == 0) *flags = ifr.ifr_flags;
    return r;
}

int CLinuxNet_tap_set_flags(int sock, const char *name, short flags) {
    struct ifreq ifr;
    CLinuxNet_fill_name(&ifr, name);
    ifr.ifr_flags = flags;
    return ioctl(sock, SIOCSIFFLAGS, &ifr);
}

int CLinuxNet_tap_set_mtu(int sock, const char *name, int mtu) {
    struct ifreq ifr;
    CLinuxNet_fill_name(&ifr, name);
    ifr.ifr_mtu = mtu;
    return ioctl(sock, SIOCSIFMTU, &ifr);
}

int CLinuxNet_tap_get_mtu(int sock, const char *name, int *mtu) {
    struct ifreq ifr;
    CLinuxNet_fill_name(&ifr, name);
    int r = ioctl(sock, SIOCGIFMTU, &ifr);
    if (r == 0) *mtu = ifr.ifr_mtu;
    return r;
}

int CLinuxNet_tap_set_mac(int sock, const char *name, const uint8_t *mac) {
    struct ifreq ifr;
    CLinuxNet_fill_name(&ifr, name);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
    return ioctl(sock, SIOCSIFHWADDR, &ifr);
}

int CLinuxNet_tap_get_mac(int sock, const char *name, uint8_t *mac) {
    struct ifreq ifr;
    CLinuxNet_fill_name(&ifr, name);
    int r = ioctl(sock, SIOCGIFHWADDR, &ifr);
    if (r == 0) memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return r;
}
