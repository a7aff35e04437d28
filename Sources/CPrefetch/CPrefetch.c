// Empty on purpose: everything is `static inline` in include/CPrefetch.h. SwiftPM wants at least one
// source file in a C target.
#include "CPrefetch.h"
