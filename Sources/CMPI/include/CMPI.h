// C shim over Open MPI for sge (imported only by SGEDistributed). The header is MPI-free: requests
// are opaque pointers, communicators are always MPI_COMM_WORLD, so Swift never sees <mpi.h>'s macros.
// Every function returns an MPI error code (0 = MPI_SUCCESS) unless stated otherwise.
#ifndef SGE_CMPI_H
#define SGE_CMPI_H
#include <stdint.h>

/// MPI_Init_thread(MPI_THREAD_FUNNELED) and MPI_ERRORS_RETURN on MPI_COMM_WORLD; fills rank and size.
int cmpi_init(int *rank, int *size);
/// Whether MPI_Init has run and MPI_Finalize has not (1/0).
int cmpi_initialized(void);
int cmpi_finalize(void);
/// MPI_Abort(MPI_COMM_WORLD, code): ends every rank; does not return.
void cmpi_abort(int code);
int cmpi_barrier(void);
/// In-place broadcast of `count` bytes from `root`.
int cmpi_bcast_bytes(void *buffer, int64_t count, int root);
/// In-place sums over all ranks.
int cmpi_allreduce_sum_float(float *values, int64_t count);
int cmpi_allreduce_sum_double(double *values, int64_t count);
/// In-place maximum over all ranks.
int cmpi_allreduce_max_int(int32_t *values, int64_t count);
/// Starts an in-place float sum (MPI_Iallreduce); *request receives an opaque handle for cmpi_wait/cmpi_test.
int cmpi_iallreduce_sum_float(float *values, int64_t count, void **request);
/// Waits for and frees a request.
int cmpi_wait(void *request);
/// Drives progress; *done = 1 when complete (the request stays valid until cmpi_wait).
int cmpi_test(void *request, int *done);
/// Gathers one 64-bit value from every rank into `all` (size entries).
int cmpi_allgather_u64(uint64_t value, uint64_t *all);
/// The library's message for an error code, into buffer (NUL-terminated).
void cmpi_error_string(int code, char *buffer, int length);
#endif
