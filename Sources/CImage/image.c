// PNG read/write through libpng (moved here from COpenCL), and in-memory JPEG/PNG decoding to 8-bit
// RGB through TurboJPEG and libpng's simplified API; JPEG encoding for tests and generated folders.
#include "CImage.h"
#include <turbojpeg.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

struct sge_png_error { jmp_buf jump; char *message; int length; };

static void sge_png_on_error(png_structp png, png_const_charp message) {
    struct sge_png_error *state = (struct sge_png_error *)png_get_error_ptr(png);
    snprintf(state->message, (size_t)state->length, "%s", message);
    longjmp(state->jump, 1);
}

static void sge_png_on_warning(png_structp png, png_const_charp message) { (void)png; (void)message; }

int sge_png_write(const char *path, int width, int height, int channels, const unsigned char *pixels,
                  char *error, int error_len) {
    if (channels != 3 && channels != 4) { snprintf(error, (size_t)error_len, "channels must be 3 or 4"); return -1; }
    FILE *file = fopen(path, "wb");
    if (!file) { snprintf(error, (size_t)error_len, "cannot open for writing: %s", strerror(errno)); return -2; }
    struct sge_png_error state = { .message = error, .length = error_len };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, sge_png_on_error, sge_png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { fclose(file); snprintf(error, (size_t)error_len, "libpng: out of memory"); return -3; }
    if (setjmp(state.jump)) { png_destroy_write_struct(&png, &info); fclose(file); return -4; }
    png_init_io(png, file);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 4 ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, pixels + (size_t)y * (size_t)width * (size_t)channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(file) != 0) { snprintf(error, (size_t)error_len, "close failed: %s", strerror(errno)); return -5; }
    return 0;
}

int sge_png_read(const char *path, int *width, int *height, int *channels, unsigned char *pixels,
                 char *error, int error_len) {
    FILE *file = fopen(path, "rb");
    if (!file) { snprintf(error, (size_t)error_len, "cannot open: %s", strerror(errno)); return -2; }
    struct sge_png_error state = { .message = error, .length = error_len };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, sge_png_on_error, sge_png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { fclose(file); snprintf(error, (size_t)error_len, "libpng: out of memory"); return -3; }
    if (setjmp(state.jump)) { png_destroy_read_struct(&png, &info, NULL); fclose(file); return -4; }
    png_init_io(png, file);
    png_read_info(png, info);
    png_set_expand(png);
    png_set_strip_16(png);
    png_read_update_info(png, info);
    *width = (int)png_get_image_width(png, info);
    *height = (int)png_get_image_height(png, info);
    *channels = (int)png_get_channels(png, info);
    if (pixels) {
        size_t row = (size_t)(*width) * (size_t)(*channels);
        for (int y = 0; y < *height; y++) png_read_row(png, pixels + (size_t)y * row, NULL);
        png_read_end(png, NULL);
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(file);
    return 0;
}

static int sge_is_jpeg(const unsigned char *d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }
static int sge_is_png(const unsigned char *d, size_t n) {
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    return n >= 8 && memcmp(d, magic, 8) == 0;
}

// A TurboJPEG decompressor, or NULL with the reason in `error`.
static tjhandle sge_jpeg_decompressor(char *error, int error_len) {
    tjhandle tj = tjInitDecompress();
    if (!tj) snprintf(error, (size_t)error_len, "TurboJPEG: cannot create a decompressor");
    return tj;
}

// Reads a PNG's header into `image` (libpng's simplified API): 0, or -4 with "<what>: <reason>" in
// `error` and the image freed.
static int sge_png_begin(png_image *image, const unsigned char *data, size_t size, const char *what,
                         char *error, int error_len) {
    memset(image, 0, sizeof *image);
    image->version = PNG_IMAGE_VERSION;
    if (png_image_begin_read_from_memory(image, data, size)) return 0;
    snprintf(error, (size_t)error_len, "%s: %s", what, image->message);
    png_image_free(image);
    return -4;
}

int sge_image_info(const unsigned char *data, size_t size, int *width, int *height, int *kind,
                   char *error, int error_len) {
    if (sge_is_jpeg(data, size)) {
        tjhandle tj = sge_jpeg_decompressor(error, error_len);
        if (!tj) return -3;
        int subsamp = 0, colorspace = 0;
        int status = tjDecompressHeader3(tj, data, (unsigned long)size, width, height, &subsamp, &colorspace);
        if (status != 0) snprintf(error, (size_t)error_len, "JPEG header: %s", tjGetErrorStr2(tj));
        tjDestroy(tj);
        *kind = 1;
        return status == 0 ? 0 : -4;
    }
    if (sge_is_png(data, size)) {
        png_image image;
        int status = sge_png_begin(&image, data, size, "PNG header", error, error_len);
        if (status != 0) return status;
        *width = (int)image.width;
        *height = (int)image.height;
        *kind = 2;
        png_image_free(&image);
        return 0;
    }
    snprintf(error, (size_t)error_len, "neither a JPEG nor a PNG (unknown magic bytes)");
    return -1;
}

int sge_image_decode_rgb(const unsigned char *data, size_t size, int width, int height, unsigned char *rgb,
                         char *error, int error_len) {
    if (sge_is_jpeg(data, size)) {
        tjhandle tj = sge_jpeg_decompressor(error, error_len);
        if (!tj) return -3;
        int status = tjDecompress2(tj, data, (unsigned long)size, rgb, width, width * 3, height, TJPF_RGB, 0);
        // A warning (e.g. a truncated file whose missing rows are filled in grey) is an error here:
        // a damaged photograph is skipped, not trained on.
        if (status != 0) snprintf(error, (size_t)error_len, "JPEG: %s", tjGetErrorStr2(tj));
        tjDestroy(tj);
        return status == 0 ? 0 : -4;
    }
    if (sge_is_png(data, size)) {
        png_image image;
        int status = sge_png_begin(&image, data, size, "PNG", error, error_len);
        if (status != 0) return status;
        if ((int)image.width != width || (int)image.height != height) {
            snprintf(error, (size_t)error_len, "PNG: size changed between header and decode");
            png_image_free(&image);
            return -5;
        }
        image.format = PNG_FORMAT_RGB;
        if (!png_image_finish_read(&image, NULL, rgb, width * 3, NULL)) {
            snprintf(error, (size_t)error_len, "PNG: %s", image.message);
            png_image_free(&image);
            return -4;
        }
        png_image_free(&image);
        return 0;
    }
    snprintf(error, (size_t)error_len, "neither a JPEG nor a PNG (unknown magic bytes)");
    return -1;
}

int sge_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                    unsigned char **out, unsigned long *out_size, char *error, int error_len) {
    if (channels != 1 && channels != 3) { snprintf(error, (size_t)error_len, "channels must be 1 or 3"); return -1; }
    tjhandle tj = tjInitCompress();
    if (!tj) { snprintf(error, (size_t)error_len, "TurboJPEG: cannot create a compressor"); return -3; }
    *out = NULL;
    *out_size = 0;
    int status = tjCompress2(tj, pixels, width, width * channels, height, channels == 3 ? TJPF_RGB : TJPF_GRAY,
                             out, out_size, channels == 3 ? TJSAMP_420 : TJSAMP_GRAY, quality, 0);
    if (status != 0) snprintf(error, (size_t)error_len, "JPEG encode: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    return status == 0 ? 0 : -4;
}

void sge_jpeg_free(unsigned char *buffer) { tjFree(buffer); }
