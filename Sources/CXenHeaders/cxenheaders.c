#include "cxenheaders.h"
const cxen_layout_fact *cxen_layout_facts(unsigned long *count) { *count = 0; return 0; }
