#include "packet_shim.h"
