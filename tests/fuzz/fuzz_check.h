/* What every fuzz target shares: CHECK, and sanitizer options.
 *
 * Findings abort, so that libFuzzer keeps the input. A test harness, not
 * production code: a macro is the clearest way to report the line.
 * Include it once per target (it defines a function). */
#ifndef WSG_FUZZ_CHECK_H
#define WSG_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* UBSan reports count as crashes even where the library was built to
 * recover from them. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

#endif
