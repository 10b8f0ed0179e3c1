/* The event counters (see counters.h): defined here, below every layer
 * that bumps them, so that none of those layers depends on the report. */
#include "counters.h"

struct hak_counters hak_counters;
