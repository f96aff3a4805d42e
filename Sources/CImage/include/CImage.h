// C shim over libjpeg-turbo (TurboJPEG API), libpng and zlib: image decode/encode and gzip.
// No OpenCL here. Every function returns 0 on success, otherwise a negative code and a message in
// `error` (up to `error_len` bytes).
#ifndef SGE_CIMAGE_H
#define SGE_CIMAGE_H

#include <stddef.h>
#include <png.h>
#include <zlib.h>

/// Writes an 8-bit RGB or RGBA image to `path` with libpng.
int sge_png_write(const char *path, int width, int height, int channels, const unsigned char *pixels,
                  char *error, int error_len);

/// Reads a PNG's size and channel count (after expansion to 8-bit) with libpng; if `pixels` is not
/// NULL it must hold width*height*channels bytes and receives the image.
int sge_png_read(const char *path, int *width, int *height, int *channels, unsigned char *pixels,
                 char *error, int error_len);

/// Reads the size of a JPEG (TurboJPEG) or PNG held in memory; `*kind` is 1 for JPEG, 2 for PNG.
/// The kind is taken from the magic bytes, not from a file name.
int sge_image_info(const unsigned char *data, size_t size, int *width, int *height, int *kind,
                   char *error, int error_len);

/// Decodes a JPEG or PNG held in memory to 8-bit RGB (width*height*3 bytes into `rgb`, which must
/// hold that many). Grey JPEGs are expanded to RGB; PNG grey, palette, alpha (composited on black)
/// and 16-bit images are converted to 8-bit RGB by libpng's simplified API.
int sge_image_decode_rgb(const unsigned char *data, size_t size, int width, int height, unsigned char *rgb,
                         char *error, int error_len);

/// Encodes 8-bit RGB (channels 3) or grey (channels 1) pixels as a baseline JPEG with 4:2:0
/// subsampling (4:0:0 for grey) at `quality` (1...100). `*out` receives a buffer that the caller
/// frees with sge_jpeg_free; `*out_size` its length.
int sge_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                    unsigned char **out, unsigned long *out_size, char *error, int error_len);

/// Frees a buffer returned by sge_jpeg_encode.
void sge_jpeg_free(unsigned char *buffer);

#endif
