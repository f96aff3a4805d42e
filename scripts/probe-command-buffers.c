// Probe of cl_khr_command_buffer against plain enqueues (issue 17): the host time to issue a chain
// of N small kernels one by one (arguments already set, as sge's bound launch sites do) against
// replaying the same chain recorded once in a command buffer, and the wall time to the end of both.
// Results are checked against each other (same values after each form).
//
//   gcc -O2 -o /tmp/probe-command-buffers scripts/probe-command-buffers.c -lOpenCL -lm
//   /tmp/probe-command-buffers [launches=100] [floats=4096] [rounds=20]
//
// Prints one line per form: median host ms to issue, median ms from the first enqueue to clFinish,
// and the one-off cost of recording and finalizing the command buffer.
//
// `capture [plain|rebind|relaunch]` checks instead that a recorded command keeps the kernel
// arguments it was recorded with, as the extension requires: it records x *= 2 on buffer a and
// replays it; `rebind` first points the kernel at buffer b with factor 3, `relaunch` also runs the
// kernel directly. Exit 0 when the replay used the recorded arguments (a = 2), 1 when not. On PoCL
// 3.1 `rebind` crashed inside the kernel (SIGSEGV) and `relaunch` left a = 1, b = 9.
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *source =
    "__kernel void chain_step(__global float *x, const float a, const int n) {\n"
    "    const int i = get_global_id(0);\n"
    "    if (i < n) x[i] = x[i] * a + 1.0f;\n"
    "}\n"
    "__kernel void times(__global float *x, const float by) { x[get_global_id(0)] *= by; }\n";

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp);
    return v[n / 2];
}

#define CHECK(call)                                                                      \
    do {                                                                                 \
        cl_int e_ = (call);                                                              \
        if (e_ != CL_SUCCESS) {                                                          \
            fprintf(stderr, "%s failed: %d (line %d)\n", #call, e_, __LINE__);           \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

// The `capture` mode (see the top): 0 when the replay used the recorded arguments, 1 when not.
static int capture(cl_platform_id platform, cl_context context, cl_command_queue queue, cl_program program, const char *mode) {
    cl_int err;
    cl_kernel kernel = clCreateKernel(program, "times", &err);
    CHECK(err);
    float ones[4] = {1, 1, 1, 1};
    cl_mem a = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof ones, ones, &err);
    CHECK(err);
    cl_mem b = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof ones, ones, &err);
    CHECK(err);
    clCreateCommandBufferKHR_fn create = (clCreateCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clCreateCommandBufferKHR");
    clCommandNDRangeKernelKHR_fn record = (clCommandNDRangeKernelKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clCommandNDRangeKernelKHR");
    clFinalizeCommandBufferKHR_fn finalize = (clFinalizeCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clFinalizeCommandBufferKHR");
    clEnqueueCommandBufferKHR_fn enqueue = (clEnqueueCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clEnqueueCommandBufferKHR");
    if (!create || !record || !finalize || !enqueue) {
        printf("no cl_khr_command_buffer entry points on this platform\n");
        return 2;
    }
    const int rebind = strcmp(mode, "rebind") == 0, relaunch = strcmp(mode, "relaunch") == 0;
    const float two = 2, three = 3;
    const size_t global = 4;
    cl_command_buffer_khr recorded = create(1, &queue, NULL, &err);
    CHECK(err);
    CHECK(clSetKernelArg(kernel, 0, sizeof a, &a));
    CHECK(clSetKernelArg(kernel, 1, sizeof two, &two));
    CHECK(record(recorded, NULL, NULL, kernel, 1, NULL, &global, NULL, 0, NULL, NULL, NULL));
    CHECK(finalize(recorded));
    if (rebind || relaunch) {
        CHECK(clSetKernelArg(kernel, 0, sizeof b, &b));
        CHECK(clSetKernelArg(kernel, 1, sizeof three, &three));
        if (relaunch) CHECK(clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, NULL, 0, NULL, NULL));
    }
    printf("%s: replaying the command recorded as a *= 2\n", mode);
    fflush(stdout);
    CHECK(enqueue(1, &queue, recorded, 0, NULL, NULL));
    CHECK(clFinish(queue));
    float va[4], vb[4];
    CHECK(clEnqueueReadBuffer(queue, a, CL_TRUE, 0, sizeof va, va, 0, NULL, NULL));
    CHECK(clEnqueueReadBuffer(queue, b, CL_TRUE, 0, sizeof vb, vb, 0, NULL, NULL));
    const float expect_b = relaunch ? 3 : 1;
    const int kept = va[0] == 2 && vb[0] == expect_b;
    printf("a = %g (expected 2), b = %g (expected %g): %s\n", va[0], vb[0], expect_b,
           kept ? "arguments captured at recording" : "NOT captured at recording");
    return kept ? 0 : 1;
}

int main(int argc, char **argv) {
    const int capturing = argc > 1 && strcmp(argv[1], "capture") == 0;
    const int launches = argc > 1 && !capturing ? atoi(argv[1]) : 100;
    const int n = argc > 2 && !capturing ? atoi(argv[2]) : 4096;
    const int rounds = argc > 3 && !capturing ? atoi(argv[3]) : 20;
    if (launches < 1 || n < 1 || rounds < 1) {
        fprintf(stderr, "usage: %s [launches >= 1] [floats >= 1] [rounds >= 1] | capture [plain|rebind|relaunch]\n", argv[0]);
        return 2;
    }
    cl_platform_id platform;
    cl_device_id device;
    CHECK(clGetPlatformIDs(1, &platform, NULL));
    CHECK(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL));
    char name[256], extensions[8192];
    CHECK(clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof name, name, NULL));
    CHECK(clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, sizeof extensions, extensions, NULL));
    cl_int err;
    cl_context context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK(err);
    cl_command_queue queue = clCreateCommandQueueWithProperties(context, device, NULL, &err);
    CHECK(err);
    cl_program program = clCreateProgramWithSource(context, 1, &source, NULL, &err);
    CHECK(err);
    CHECK(clBuildProgram(program, 1, &device, "", NULL, NULL));
    if (capturing) return capture(platform, context, queue, program, argc > 2 ? argv[2] : "plain");
    cl_kernel kernel = clCreateKernel(program, "chain_step", &err);
    CHECK(err);
    float *init = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    for (int i = 0; i < n; ++i) init[i] = (float)(i % 7) * 0.25f;
    cl_mem x = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(float) * n, init, &err);
    CHECK(err);
    const float scale = 0.5f;
    CHECK(clSetKernelArg(kernel, 0, sizeof x, &x));
    CHECK(clSetKernelArg(kernel, 1, sizeof scale, &scale));
    CHECK(clSetKernelArg(kernel, 2, sizeof n, &n));
    size_t global = ((size_t)n + 63) / 64 * 64, local = 64;
    printf("device %s, %d launches of %d floats, median of %d rounds\n", name, launches, n, rounds);

    double *host = malloc(sizeof(double) * rounds), *wall = malloc(sizeof(double) * rounds);
    // Plain enqueues (one warm-up round first).
    for (int r = -1; r < rounds; ++r) {
        CHECK(clFinish(queue));
        double t0 = now_ms();
        for (int i = 0; i < launches; ++i) CHECK(clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, &local, 0, NULL, NULL));
        double t1 = now_ms();
        CHECK(clFinish(queue));
        double t2 = now_ms();
        if (r >= 0) host[r] = t1 - t0, wall[r] = t2 - t0;
    }
    printf("enqueue one by one:   host %.3f ms to issue (%.1f us per launch), %.3f ms to clFinish\n", median(host, rounds),
           1e3 * median(host, rounds) / launches, median(wall, rounds));
    CHECK(clEnqueueReadBuffer(queue, x, CL_TRUE, 0, sizeof(float) * n, a, 0, NULL, NULL));

    if (!strstr(extensions, "cl_khr_command_buffer")) {
        printf("command buffer:       the device does not offer cl_khr_command_buffer\n");
        return 0;
    }
    clCreateCommandBufferKHR_fn create = (clCreateCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clCreateCommandBufferKHR");
    clCommandNDRangeKernelKHR_fn record = (clCommandNDRangeKernelKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clCommandNDRangeKernelKHR");
    clFinalizeCommandBufferKHR_fn finalize = (clFinalizeCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clFinalizeCommandBufferKHR");
    clEnqueueCommandBufferKHR_fn enqueue = (clEnqueueCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clEnqueueCommandBufferKHR");
    clReleaseCommandBufferKHR_fn release = (clReleaseCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clReleaseCommandBufferKHR");
    if (!create || !record || !finalize || !enqueue || !release) {
        printf("command buffer:       advertised, but an entry point is missing\n");
        return 1;
    }
    // Same starting values, then the chain recorded once (sync points chain each kernel on the last).
    CHECK(clEnqueueWriteBuffer(queue, x, CL_TRUE, 0, sizeof(float) * n, init, 0, NULL, NULL));
    double r0 = now_ms();
    cl_command_buffer_khr buffer = create(1, &queue, NULL, &err);
    CHECK(err);
    cl_sync_point_khr last = 0;
    for (int i = 0; i < launches; ++i) {
        cl_sync_point_khr point;
        CHECK(record(buffer, NULL, NULL, kernel, 1, NULL, &global, &local, i ? 1 : 0, i ? &last : NULL, &point, NULL));
        last = point;
    }
    CHECK(finalize(buffer));
    double r1 = now_ms();
    for (int r = -1; r < rounds; ++r) {
        CHECK(clFinish(queue));
        double t0 = now_ms();
        CHECK(enqueue(1, &queue, buffer, 0, NULL, NULL));
        double t1 = now_ms();
        CHECK(clFinish(queue));
        double t2 = now_ms();
        if (r >= 0) host[r] = t1 - t0, wall[r] = t2 - t0;
    }
    // Both forms ran the chain rounds + 1 times from `init`: the values must agree exactly.
    printf("command buffer:       host %.3f ms to issue, %.3f ms to clFinish; recorded and finalized once in %.3f ms\n",
           median(host, rounds), median(wall, rounds), r1 - r0);
    CHECK(clEnqueueReadBuffer(queue, x, CL_TRUE, 0, sizeof(float) * n, b, 0, NULL, NULL));
    double worst = 0;
    for (int i = 0; i < n; ++i) worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
    printf("results: largest difference between the two forms %.3g (%s)\n", worst, worst == 0 ? "identical" : "DIFFERENT");
    CHECK(release(buffer));
    return worst == 0 ? 0 : 1;
}
