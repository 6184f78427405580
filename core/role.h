/* role.h - who wrote a chat message. One definition shared by templates (core/), the history
 * database (history/) and the TUI, so a message keeps its role across layers without mapping. */
#ifndef MX_ROLE_H
#define MX_ROLE_H

enum mx_role { MX_ROLE_SYSTEM, MX_ROLE_USER, MX_ROLE_ASSISTANT, MX_ROLE_TOOL };

#endif
