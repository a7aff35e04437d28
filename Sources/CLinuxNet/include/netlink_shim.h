// netlink shims (see CLinuxNet.h): the rtnetlink walking macros (NLMSG_*, IFLA_RTA, RTA_*) as
// functions, because Swift does not import function-like macros. Each is exactly its macro.
#ifndef CLINUXNET_NETLINK_SHIM_H
#define CLINUXNET_NETLINK_SHIM_H

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>

/// RTMGRP_LINK: the multicast group of link (interface) add/change/delete notifications.
#define CLinuxNet_RTMGRP_LINK 1u

/// NLMSG_OK(nlh, len)
int CLinuxNet_nlmsg_ok(const struct nlmsghdr *nlh, int len);
/// NLMSG_NEXT(nlh, len): the next message; `len` is decremented as the macro does.
const struct nlmsghdr *CLinuxNet_nlmsg_next(const struct nlmsghdr *nlh, int *len);
/// NLMSG_DATA(nlh)
const void *CLinuxNet_nlmsg_data(const struct nlmsghdr *nlh);
/// IFLA_RTA(NLMSG_DATA(nlh)): the first attribute after the struct ifinfomsg.
const struct rtattr *CLinuxNet_ifla_first_attribute(const struct nlmsghdr *nlh);
/// IFLA_PAYLOAD(nlh): bytes of attributes after the struct ifinfomsg.
int CLinuxNet_ifla_payload(const struct nlmsghdr *nlh);
/// RTA_OK(rta, len)
int CLinuxNet_rta_ok(const struct rtattr *rta, int len);
/// RTA_NEXT(rta, len): `len` is decremented as the macro does.
const struct rtattr *CLinuxNet_rta_next(const struct rtattr *rta, int *len);
/// RTA_DATA(rta)
const void *CLinuxNet_rta_data(const struct rtattr *rta);
/// RTA_PAYLOAD(rta)
int CLinuxNet_rta_payload(const struct rtattr *rta);

#endif
