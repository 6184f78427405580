/* patharg.c - a command's path argument read like one shell word (quotes, backslashes, ~), and
 * the quoting Tab completion writes, so that every name completion offers - with spaces, quotes
 * or a ~ - is a name /show, /save, /export and /model take (issue 15: completion offered ~/x.png
 * that /show then rejected; names with spaces did not complete).
 */
#include "tui/patharg.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char mx_path_quote_chars[] = " \t\n\\\"'@<>=;|&()#$`?*[!:{";

/* Appends c to out (o: bytes so far). Returns false when out is full. */
static bool put(char *out, size_t size, size_t *o, char c) {
    if (*o + 1 >= size)
        return false;
    out[(*o)++] = c;
    return true;
}

/* The home folder of user (n bytes; n == 0: the current user), or NULL. */
static const char *home_of(const char *user, size_t n) {
    if (n == 0) {
        const char *h = getenv("HOME");
        if (h && h[0])
            return h;
        struct passwd *pw = getpwuid(getuid());
        return pw ? pw->pw_dir : NULL;
    }
    char name[256];
    if (n >= sizeof name)
        return NULL;
    memcpy(name, user, n);
    name[n] = '\0';
    struct passwd *pw = getpwnam(name);
    return pw ? pw->pw_dir : NULL;
}

int mx_path_arg(const char *arg, char *out, size_t size, struct mx_err *err) {
    if (!size)
        return mx_err_set(err, MX_ERANGE, "path: no room");
    out[0] = '\0';
    if (!arg)
        return 0;
    while (*arg == ' ' || *arg == '\t')
        arg++;
    size_t len = strlen(arg);
    while (len && (arg[len - 1] == ' ' || arg[len - 1] == '\t') &&
           !mx_path_char_quoted(arg, (int)len - 1))
        len--;
    size_t o = 0, i = 0;
    if (len && arg[0] == '~') { /* ~ or ~user, up to the first slash */
        size_t e = 1;
        while (e < len && arg[e] != '/')
            e++;
        if (!memchr(arg, '\\', e) && !memchr(arg, '\'', e) && !memchr(arg, '"', e)) {
            const char *home = home_of(arg + 1, e - 1);
            if (!home)
                return mx_err_set(err, MX_ENOENT, "%.*s: no such home folder", (int)e, arg);
            for (const char *h = home; *h; h++)
                if (!put(out, size, &o, *h))
                    return mx_err_set(err, MX_ERANGE, "path too long");
            i = e;
        }
    }
    char quote = 0;
    for (; i < len; i++) {
        char c = arg[i];
        if (quote == '\'') {
            if (c == '\'') {
                quote = 0;
                continue;
            }
        } else if (quote == '"') {
            if (c == '"') {
                quote = 0;
                continue;
            }
            if (c == '\\' && i + 1 < len && (arg[i + 1] == '"' || arg[i + 1] == '\\'))
                c = arg[++i];
        } else if (c == '\'' || c == '"') {
            quote = c;
            continue;
        } else if (c == '\\' && i + 1 < len) {
            c = arg[++i];
        }
        if (!put(out, size, &o, c))
            return mx_err_set(err, MX_ERANGE, "path too long (over %zu bytes)", size - 1);
    }
    out[o] = '\0';
    if (quote)
        return mx_err_set(err, MX_EINVAL, "%s: the quote %c is not closed", arg, quote);
    return 0;
}

char *mx_path_quote(const char *name, char quote) {
    size_t n = strlen(name);
    char *q = malloc(2 * n + 1);
    if (!q)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (quote == '"' ? (c == '"' || c == '\\') : !quote && strchr(mx_path_quote_chars, c))
            q[o++] = '\\';
        q[o++] = c; /* inside '...' nothing can be escaped; a ' in the name stays as it is */
    }
    q[o] = '\0';
    return q;
}

char *mx_path_unquote(const char *word, char quote) {
    size_t n = strlen(word);
    char *u = malloc(n + 1);
    if (!u)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = word[i];
        if (c == '\\' && quote != '\'' && i + 1 < n &&
            (quote != '"' || word[i + 1] == '"' || word[i + 1] == '\\'))
            c = word[++i];
        u[o++] = c;
    }
    u[o] = '\0';
    return u;
}

bool mx_path_char_quoted(const char *text, int i) {
    int k = 0;
    while (i - 1 - k >= 0 && text[i - 1 - k] == '\\')
        k++;
    return k % 2 == 1;
}
