#include "tap_shim.h"
