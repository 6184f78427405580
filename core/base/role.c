/* role.c - the one table of chat role names. */
#include "core/base/role.h"

#include <string.h>

#include "core/base/err.h"

static const char *const role_names[MX_N_ROLES] = {"system", "user", "assistant", "tool"};

const char *mx_role_name(enum mx_role r) {
    return (unsigned)r < MX_N_ROLES ? role_names[r] : "?";
}

int mx_role_parse(const char *s, enum mx_role *r) {
    for (int i = 0; s && i < MX_N_ROLES; i++) {
        if (!strcmp(s, role_names[i])) {
            *r = (enum mx_role)i;
            return 0;
        }
    }
    return MX_EINVAL;
}
