// CLinuxNet: boring C shims over Linux networking (AF_PACKET rings, TAP, netlink, ioctls).
// Every exported symbol is prefixed CLinuxNet_; macros and inline functions that Swift cannot
// import are wrapped as functions here and nowhere else. No logic lives in these files.
#ifndef CLINUXNET_H
#define CLINUXNET_H

#include "packet_shim.h"
#include "tap_shim.h"
#include "netlink_shim.h"
#include "event_shim.h"

#endif
