#include "netlink_shim.h"
