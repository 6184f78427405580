/* markdown.h - renders a chat message (Markdown essentials) into styled, wrapped screen lines:
 * headings, **bold**, *italic*, `inline code`, fenced code blocks drawn as boxes with a language
 * label and keyword highlighting, lists with hanging indents, quotes, tables as aligned columns
 * (cells wrap inside their column when the table is wider than the screen), links as their text
 * underlined + the URL dimmed (no OSC 8: the text stays inert). The input must already be
 * sanitised (core/base/text.h); the output is plain data that a view draws with its theme, so the
 * renderer is tested without a terminal. Workload: re-rendering the message being streamed after
 * every token, so it is linear in the message length and allocates per call only.
 */
#ifndef MX_MARKDOWN_H
#define MX_MARKDOWN_H

#include <stddef.h>

#include "tui/theme.h"

/* One screen line: text bytes with a role and MX_ATTR_* attributes per byte. */
struct mx_rline {
    char *text;              /* NUL-terminated UTF-8, owned by the struct mx_rtext */
    unsigned char *role;     /* enum mx_theme_role per byte */
    unsigned char *attrs;    /* MX_ATTR_* per byte */
    size_t len;
};

struct mx_rtext {
    struct mx_rline *lines;
    size_t n_lines, cap;
    char *last_code;         /* the last fenced code block's content (for /copy), or NULL */
};

/* Renders text (sanitised, '\n'-separated) at `width` columns; base_role styles plain text.
 * Returns 0 or MX_ENOMEM (out is then empty). Free with mx_rtext_free. */
int mx_markdown_render(const char *text, size_t len, int width, int base_role,
                       struct mx_rtext *out);

void mx_rtext_free(struct mx_rtext *r); /* NULL ok; leaves r empty */

#endif
