// packet shims: everything is `static inline` in include/packet_shim.h (the status word accesses
// are per frame and must not cost a call); this file only makes sure the header compiles alone.
#include "packet_shim.h"
