/* resample.h - Pillow's Image.resize filters LANCZOS and NEAREST on RGB8 images, reproduced to
 * the byte (fixed-point coefficients, the horizontal pass first into an 8-bit image, then the
 * vertical), because AUTOMATIC1111's image upscalers "Lanczos" and "Nearest" (the hires fix) are
 * those calls and its users compare pictures.
 * Ref: Pillow src/libImaging/Resample.c (precompute_coeffs, normalize_coeffs_8bpc,
 * ImagingResampleHorizontal/Vertical_8bpc) and Geometry.c (affine NEAREST transform).
 */
#ifndef MX_IMAGE_RESAMPLE_H
#define MX_IMAGE_RESAMPLE_H

#include "core/image/image.h"

enum mx_resample { MX_RESAMPLE_LANCZOS = 0, MX_RESAMPLE_NEAREST };

/* src resized to dw x dh with filter (enum mx_resample) into *out (caller frees). Returns 0,
 * MX_EINVAL (empty sizes), MX_ERANGE (over the image caps) or MX_ENOMEM. */
int mx_image_resample(const struct mx_image *src, int dw, int dh, int filter,
                      struct mx_image *out);

#endif
