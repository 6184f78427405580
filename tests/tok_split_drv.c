/* tok_split_drv.c - test helper for tests/tok_split_regex.sh: reads lines "<pre> <hex bytes>"
 * (pre 0-3 = enum mx_tok_pre, 4 = CLIP) and prints each piece's end offset (CLIP: start:end,
 * as it skips spaces), one line per input line, so a script can compare the hand-written
 * splitters with the real regexes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tok_internal.h"

static int emit(void *ud, size_t a, size_t b) {
    if (ud)
        printf(" %zu:%zu", a, b);
    else
        printf(" %zu", b);
    return 0;
}

int main(void) {
    static char line[1 << 20], buf[1 << 19];
    while (fgets(line, sizeof(line), stdin)) {
        char *hex = strchr(line, ' ');
        int pre = atoi(line);
        size_t n = 0;
        for (char *p = hex ? hex + 1 : line; p[0] && p[0] != '\n' && p[1] && n < sizeof(buf);
             p += 2) {
            unsigned v;
            if (sscanf(p, "%2x", &v) != 1)
                break;
            buf[n++] = (char)v;
        }
        if (pre == 4)
            mx_tok_split_clip(buf, n, emit, (void *)1);
        else
            mx_tok_split((enum mx_tok_pre)pre, buf, n, emit, NULL);
        printf("\n");
    }
    return 0;
}
