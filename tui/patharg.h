/* patharg.h - the one reading of a command's path argument (/show, /save, /export, /model) and
 * its quoting for Tab completion (patharg.c), so that what completion offers, the command takes.
 */
#ifndef MX_TUI_PATHARG_H
#define MX_TUI_PATHARG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"

/* Reads arg, what the user typed after a command, as one path the way a shell reads one word:
 * surrounding blanks dropped, '...' taken literally, "..." with \" and \\ escapes, a backslash
 * outside quotes escapes the next character (completion writes "my\ file.png"), blanks that are
 * not quoted are kept (the whole rest of the line is the path), and a leading unquoted ~ or
 * ~user becomes that home folder ($HOME, else the password database). Writes the path to
 * out[0..size) ("" for an empty arg). Returns 0, MX_EINVAL (a quote left open), MX_ENOENT (an
 * unknown ~user, or no home folder) or MX_ERANGE (too long), with err set. Thread-safe except
 * for getpwnam. */
int mx_path_arg(const char *arg, char *out, size_t size, struct mx_err *err);

/* The characters mx_path_quote escapes with a backslash (for readline's
 * rl_filename_quote_characters). */
extern const char mx_path_quote_chars[];

/* Quotes name for the input line: a backslash before each of mx_path_quote_chars, or, when the
 * user opened a quote (quote '\'' or '"'), as needed inside it. Returns a malloc'd string (caller
 * frees) or NULL when out of memory. */
char *mx_path_quote(const char *name, char quote);

/* Undoes mx_path_quote on a word being completed (quote: the quote the word opened, or 0).
 * Returns a malloc'd string or NULL when out of memory. */
char *mx_path_unquote(const char *word, char quote);

/* True when text[i] is escaped by an odd run of backslashes before it (readline's
 * rl_char_is_quoted_p, so "my\ f" is one word). */
bool mx_path_char_quoted(const char *text, int i);

#endif
