/* role.h - who wrote a chat message. One definition, with its one table of names, shared by
 * templates (core/), the history database (history/) and the front ends, so a message keeps its
 * role across layers without mapping. */
#ifndef MX_ROLE_H
#define MX_ROLE_H

enum mx_role { MX_ROLE_SYSTEM, MX_ROLE_USER, MX_ROLE_ASSISTANT, MX_ROLE_TOOL };

#define MX_N_ROLES 4

/* The role's name as chat templates and the database spell it ("system", "user", "assistant",
 * "tool"); "?" for a value outside the enum. Static string. */
const char *mx_role_name(enum mx_role r);

/* Parses a name written by mx_role_name into *r. Returns 0 or MX_EINVAL (*r unchanged). */
int mx_role_parse(const char *s, enum mx_role *r);

#endif
