/* keys_table.c - prints the chat's key table (tui/keys.h), one named key a line as
 * "KEY<TAB>HELP", in table order; tests/tui_keys.sh compares it with the README's key list and
 * with what /help shows. Only the names and help texts are read: nothing of the TUI is linked.
 */
#include <stddef.h>
#include <stdio.h>

#include "tui/keys.h"

int main(void) {
#define PRINT_KEY(f, seq, keyname, help)                                                    \
    if (keyname)                                                                            \
        printf("%s\t%s\n", (const char *)keyname, (const char *)help);
    MX_KEY_TABLE(PRINT_KEY)
#undef PRINT_KEY
    return 0;
}
