/* Private to src/config: the option table and its types. */
#ifndef WSG_CONFIG_INT_H
#define WSG_CONFIG_INT_H

#include "config/config.h"

typedef enum wsg_option_type {
    OPT_STRING,
    OPT_LIST, /* repeatable flag; comma-separated in env and file */
    OPT_PORT,
    OPT_UINT,
    OPT_DURATION,
    OPT_SIZE,
    OPT_BOOL,
    OPT_DOUBLE, /* min and max in thousandths */
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_CHOICE, /* a string, one of the words of metavar ("close|drop") */
} wsg_option_type;

typedef struct wsg_option {
    const char *flag; /* without the leading dashes */
    const char *env;
    wsg_option_type type;
    size_t offset; /* into wsg_config */
    const char *def; /* as the user would write it; NULL: unset */
    uint64_t min;
    uint64_t max;
    const char *metavar;
    const char *help;
} wsg_option;

extern const wsg_option wsg_options[];
extern const size_t wsg_option_count;

#endif
