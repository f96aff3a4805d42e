// Counts a process's clEnqueueNDRangeKernel calls (sge's own kernels and every kernel CLBlast
// enqueues) and prints "CLCOUNT <n>" on stderr at exit. For comparing launches per training step
// between builds that predate `sge bench step`'s launch counter: run a command twice with different
// step counts and divide the difference by the difference in steps.
//
//   gcc -shared -fPIC -O2 -o /tmp/count-cl-launches.so scripts/count-cl-launches.c -ldl
//   LD_PRELOAD=/tmp/count-cl-launches.so sge train --epochs 1 --steps-per-epoch 3 --out /tmp/a
//   LD_PRELOAD=/tmp/count-cl-launches.so sge train --epochs 1 --steps-per-epoch 13 --out /tmp/b
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef cl_int (*enqueue_fn)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *, const size_t *, cl_uint,
                             const cl_event *, cl_event *);

static long launches = 0;

static void report(void) { fprintf(stderr, "CLCOUNT %ld\n", launches); }

cl_int clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint dims, const size_t *offset, const size_t *global,
                              const size_t *local, cl_uint waits, const cl_event *wait_list, cl_event *event) {
    static enqueue_fn next = NULL;
    if (!next) {
        next = (enqueue_fn)dlsym(RTLD_NEXT, "clEnqueueNDRangeKernel");
        if (!next) return CL_INVALID_OPERATION;
        atexit(report);
    }
    launches++;
    return next(queue, kernel, dims, offset, global, local, waits, wait_list, event);
}
