#ifndef CXENHEADERS_H
#define CXENHEADERS_H
/// Offsets and sizes from Xen's public headers (Debian libxen-dev), for ABI tests.
#include <stddef.h>
typedef struct { const char *name; unsigned long value; } cxen_layout_fact;
/// Returns a table of "struct.field" -> offset and "sizeof struct" -> size facts.
const cxen_layout_fact *cxen_layout_facts(unsigned long *count);
#endif
