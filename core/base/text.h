/* text.h - text that reaches the terminal: making untrusted text inert, display widths and word
 * wrapping of UTF-8 (combining marks, CJK double width, emoji) through wcwidth.
 *
 * Model output, session titles, file names and pasted text are untrusted: ESC/CSI/OSC/DCS
 * sequences in them must never reach the terminal, or a model could retitle the window, move the
 * cursor, write to the clipboard (OSC 52) or emit sixel. mx_text_sanitize shows them inert.
 * Everything here needs a UTF-8 LC_CTYPE (tui/ calls setlocale at start-up).
 */
#ifndef MX_TEXT_H
#define MX_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bound of mx_text_sanitize's output for len input bytes, NUL included. */
#define MX_SANITIZE_MAX(len) ((len) * 8 + 1)

/* Copies src[0..len) to dst as printable UTF-8: C0 controls become caret notation (ESC -> "^[",
 * BEL -> "^G"), DEL -> "^?", C1 controls and bidirectional overrides/isolates become "<U+XXXX>",
 * invalid UTF-8 bytes become U+FFFD. '\n' and '\t' are kept when keep_newlines, else shown as
 * "^J"/"^I". dst must hold MX_SANITIZE_MAX(len) bytes; returns the length written (NUL added). */
size_t mx_text_sanitize(const char *src, size_t len, char *dst, bool keep_newlines);

/* Decodes one UTF-8 character at s (at most len bytes): returns its byte length (>= 1) and the
 * code point in *cp, or U+FFFD with length 1 for an invalid or truncated sequence. */
size_t mx_utf8_decode(const char *s, size_t len, unsigned int *cp);

/* Writes code point cp as UTF-8 at buf (room for 4 bytes; code points past U+10FFFF become
 * U+FFFD) and returns the bytes written, 1..4. */
size_t mx_utf8_put(uint32_t cp, char *buf);

/* Display width of one code point (wcwidth; 0 for combining marks; control characters -1). */
int mx_char_width(unsigned int cp);

/* Display columns of s[0..len) (invalid bytes count 1, controls count 0). */
int mx_text_width(const char *s, size_t len);

/* A byte count for people, decimal units as downloads and disks state them: "4.37 GB",
 * "670 MB", "13.8 MB", "64 KB". */
void mx_fmt_bytes(double n, char *buf, size_t size);

/* A progress bar of cells block characters, round(frac * cells) of them full (█) and the rest
 * light (░), into buf (NUL-terminated; 3 bytes a cell: size >= 3 * cells + 1 for all of it). */
void mx_text_bar(double frac, int cells, char *buf, size_t size);

/* Word wrap: the longest prefix of s[0..len) that fits `width` columns, breaking after a space
 * when possible, else between characters (never inside one, never before a combining mark).
 * A '\n' ends the line. Returns the prefix length in bytes (> 0 when len > 0, even if a single
 * double-width character does not fit a 1-column width) and sets *next to where the following
 * line starts (skipping the space or newline the break consumed). */
size_t mx_text_wrap(const char *s, size_t len, int width, size_t *next);

#endif
