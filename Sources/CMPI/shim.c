// Open MPI calls for sge (see include/CMPI.h). Debian installs mpi.h under
// /usr/lib/x86_64-linux-gnu/openmpi/include, reachable from the default search path as <openmpi/mpi.h>
// (/usr/include/<triple>/openmpi) or <mpi/mpi.h> (the mpi alternative), so no -I flag is needed.
#if __has_include(<mpi.h>)
#include <mpi.h>
#elif __has_include(<openmpi/mpi.h>)
#include <openmpi/mpi.h>
#else
#include <mpi/mpi.h>
#endif
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "CMPI.h"

static int fits(int64_t count) { return count >= 0 && count <= INT_MAX; }

int cmpi_init(int *rank, int *size) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    rc = MPI_Comm_rank(MPI_COMM_WORLD, rank);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Comm_size(MPI_COMM_WORLD, size);
}

int cmpi_initialized(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int cmpi_finalize(void) { return MPI_Finalize(); }

void cmpi_abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    _Exit(code);
}

int cmpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

int cmpi_bcast_bytes(void *buffer, int64_t count, int root) {
    if (!fits(count)) return MPI_ERR_COUNT;
    return MPI_Bcast(buffer, (int)count, MPI_BYTE, root, MPI_COMM_WORLD);
}

int cmpi_allreduce_sum_float(float *values, int64_t count) {
    if (!fits(count)) return MPI_ERR_COUNT;
    return MPI_Allreduce(MPI_IN_PLACE, values, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

int cmpi_allreduce_sum_double(double *values, int64_t count) {
    if (!fits(count)) return MPI_ERR_COUNT;
    return MPI_Allreduce(MPI_IN_PLACE, values, (int)count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

int cmpi_allreduce_max_int(int32_t *values, int64_t count) {
    if (!fits(count)) return MPI_ERR_COUNT;
    return MPI_Allreduce(MPI_IN_PLACE, values, (int)count, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
}

int cmpi_iallreduce_sum_float(float *values, int64_t count, void **request) {
    if (!fits(count)) return MPI_ERR_COUNT;
    MPI_Request *r = malloc(sizeof(MPI_Request));
    if (!r) return MPI_ERR_NO_MEM;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, values, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r);
    if (rc != MPI_SUCCESS) { free(r); return rc; }
    *request = r;
    return MPI_SUCCESS;
}

int cmpi_wait(void *request) {
    MPI_Request *r = request;
    int rc = MPI_Wait(r, MPI_STATUS_IGNORE);
    free(r);
    return rc;
}

int cmpi_test(void *request, int *done) {
    return MPI_Test((MPI_Request *)request, done, MPI_STATUS_IGNORE);
}

int cmpi_allgather_u64(uint64_t value, uint64_t *all) {
    return MPI_Allgather(&value, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
}

void cmpi_error_string(int code, char *buffer, int length) {
    if (length <= 0) return;
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) n = snprintf(text, sizeof text, "MPI error %d", code);
    strncpy(buffer, text, (size_t)length - 1);
    buffer[length - 1] = 0;
}
