// Does the driver capture a kernel's arguments when clCommandNDRangeKernelKHR records it, as
// cl_khr_command_buffer requires (later clSetKernelArg calls must not change the recorded command)?
// Issue 17: PoCL 3.1 does not; sge's CLCommandBuffer records a kernel object of its own per command.
//
//   gcc -O1 -o /tmp/command-buffer-arg-capture scripts/command-buffer-arg-capture.c -lOpenCL
//   /tmp/command-buffer-arg-capture            # record x *= 2 on buffer a, replay: a = 2, b = 1
//   /tmp/command-buffer-arg-capture rebind     # the same, but set (b, 3) on the kernel before replay
//   /tmp/command-buffer-arg-capture relaunch   # set (b, 3) and run the kernel directly, then replay
//
// Exit status 0 when the replay used the recorded arguments (a = 2 after the replay), 1 when not.
// On PoCL 3.1 `rebind` crashed inside the kernel (SIGSEGV) and `relaunch` left a = 1, b = 9.
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <stdio.h>
#include <string.h>

static const char *source = "__kernel void times(__global float *x, const float by) { x[get_global_id(0)] *= by; }";

#define OK(call)                                                            \
    do {                                                                    \
        cl_int status_ = (call);                                            \
        if (status_ != CL_SUCCESS) {                                        \
            fprintf(stderr, "%s: %d (line %d)\n", #call, status_, __LINE__); \
            return 2;                                                       \
        }                                                                   \
    } while (0)

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *mode = argc > 1 ? argv[1] : "plain";
    cl_platform_id platform;
    cl_device_id device;
    cl_int status;
    OK(clGetPlatformIDs(1, &platform, NULL));
    OK(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL));
    cl_context context = clCreateContext(NULL, 1, &device, NULL, NULL, &status);
    OK(status);
    cl_command_queue queue = clCreateCommandQueueWithProperties(context, device, NULL, &status);
    OK(status);
    cl_program program = clCreateProgramWithSource(context, 1, &source, NULL, &status);
    OK(status);
    OK(clBuildProgram(program, 1, &device, "", NULL, NULL));
    cl_kernel kernel = clCreateKernel(program, "times", &status);
    OK(status);
    float ones[4] = {1, 1, 1, 1};
    cl_mem a = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof ones, ones, &status);
    OK(status);
    cl_mem b = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof ones, ones, &status);
    OK(status);

    clCreateCommandBufferKHR_fn create_buffer =
        (clCreateCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clCreateCommandBufferKHR");
    clCommandNDRangeKernelKHR_fn record_kernel =
        (clCommandNDRangeKernelKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clCommandNDRangeKernelKHR");
    clFinalizeCommandBufferKHR_fn finalize_buffer =
        (clFinalizeCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clFinalizeCommandBufferKHR");
    clEnqueueCommandBufferKHR_fn enqueue_buffer =
        (clEnqueueCommandBufferKHR_fn)clGetExtensionFunctionAddressForPlatform(platform, "clEnqueueCommandBufferKHR");
    if (!create_buffer || !record_kernel || !finalize_buffer || !enqueue_buffer) {
        printf("no cl_khr_command_buffer entry points on this platform\n");
        return 2;
    }

    const float two = 2, three = 3;
    const size_t global = 4;
    cl_command_buffer_khr recorded = create_buffer(1, &queue, NULL, &status);
    OK(status);
    OK(clSetKernelArg(kernel, 0, sizeof a, &a));
    OK(clSetKernelArg(kernel, 1, sizeof two, &two));
    OK(record_kernel(recorded, NULL, NULL, kernel, 1, NULL, &global, NULL, 0, NULL, NULL, NULL));
    OK(finalize_buffer(recorded));
    if (strcmp(mode, "rebind") == 0 || strcmp(mode, "relaunch") == 0) {
        OK(clSetKernelArg(kernel, 0, sizeof b, &b));
        OK(clSetKernelArg(kernel, 1, sizeof three, &three));
        if (strcmp(mode, "relaunch") == 0) OK(clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, NULL, 0, NULL, NULL));
    }
    printf("%s: replaying the command recorded as a *= 2\n", mode);
    OK(enqueue_buffer(1, &queue, recorded, 0, NULL, NULL));
    OK(clFinish(queue));
    float va[4], vb[4];
    OK(clEnqueueReadBuffer(queue, a, CL_TRUE, 0, sizeof va, va, 0, NULL, NULL));
    OK(clEnqueueReadBuffer(queue, b, CL_TRUE, 0, sizeof vb, vb, 0, NULL, NULL));
    const float expect_b = strcmp(mode, "relaunch") == 0 ? 3 : 1;
    printf("a = %g (expected 2), b = %g (expected %g): %s\n", va[0], vb[0], expect_b,
           va[0] == 2 && vb[0] == expect_b ? "arguments captured at recording" : "NOT captured at recording");
    return va[0] == 2 && vb[0] == expect_b ? 0 : 1;
}
