// netlink shims: see include/netlink_shim.h. Each function is its macro, nothing more.
#include "netlink_shim.h"

int CLinuxNet_nlmsg_ok(const struct nlmsghdr *nlh, int len) { return NLMSG_OK(nlh, len); }

const struct nlmsghdr *CLinuxNet_nlmsg_next(const struct nlmsghdr *nlh, int *len) {
    int l = *len;
    const struct nlmsghdr *next = NLMSG_NEXT(nlh, l);
    *len = l;
    return next;
}

const void *CLinuxNet_nlmsg_data(const struct nlmsghdr *nlh) { return NLMSG_DATA(nlh); }

const struct rtattr *CLinuxNet_ifla_first_attribute(const struct nlmsghdr *nlh) {
    return IFLA_RTA((struct ifinfomsg *)NLMSG_DATA(nlh));
}

int CLinuxNet_ifla_payload(const struct nlmsghdr *nlh) {
    return IFLA_PAYLOAD(nlh);
}

int CLinuxNet_rta_ok(const struct rtattr *rta, int len) { return RTA_OK(rta, len); }

const struct rtattr *CLinuxNet_rta_next(const struct rtattr *rta, int *len) {
    int l = *len;
    const struct rtattr *next = RTA_NEXT(rta, l);
    *len = l;
    return next;
}

const void *CLinuxNet_rta_data(const struct rtattr *rta) { return RTA_DATA(rta); }

int CLinuxNet_rta_payload(const struct rtattr *rta) { return RTA_PAYLOAD(rta); }
