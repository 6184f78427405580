/* grid.h - a contact sheet of a batch, as AUTOMATIC1111 saves it ("grid-0001.png"): the images
 * in rows and columns, left to right and top to bottom, on black.
 * Ref: modules/images.py image_grid (v1.10) with its default settings (n_rows -1, no "prevent
 * empty spots"): rows = round(sqrt(n)) (at most n), cols = ceil(n / rows); every tile the size
 * of the first image, pasted at its top-left corner (a larger image is cut, a smaller leaves
 * black).
 */
#ifndef MX_IMAGE_GRID_H
#define MX_IMAGE_GRID_H

#include "core/image/image.h"

/* The rows A1111 chooses for n images (n >= 1). */
int mx_image_grid_rows(int n);

/* The grid of imgs[0..n) with rows rows (0: mx_image_grid_rows(n)) into *out (caller frees).
 * Returns 0, MX_EINVAL (n < 1, an empty image, rows out of 1..n), MX_ERANGE (over the image
 * caps) or MX_ENOMEM. */
int mx_image_grid(const struct mx_image *imgs, int n, int rows, struct mx_image *out);

#endif
