// Status-code names for OpenCL and CLBlast.
#include "COpenCL.h"
#include <stddef.h>

const char *sge_cl_status_name(cl_int status) {
    switch (status) {
    case -72: return "CL_MAX_SIZE_RESTRICTION_EXCEEDED";
    case -71: return "CL_INVALID_SPEC_ID";
    case -70: return "CL_INVALID_DEVICE_QUEUE";
    case -69: return "CL_INVALID_PIPE_SIZE";
    case -68: return "CL_INVALID_DEVICE_PARTITION_COUNT";
    case -67: return "CL_INVALID_LINKER_OPTIONS";
    case -66: return "CL_INVALID_COMPILER_OPTIONS";
    case -65: return "CL_INVALID_IMAGE_DESCRIPTOR";
    case -64: return "CL_INVALID_PROPERTY";
    case -63: return "CL_INVALID_GLOBAL_WORK_SIZE";
    case -62: return "CL_INVALID_MIP_LEVEL";
    case -61: return "CL_INVALID_BUFFER_SIZE";
    case -60: return "CL_INVALID_GL_OBJECT";
    case -59: return "CL_INVALID_OPERATION";
    case -58: return "CL_INVALID_EVENT";
    case -57: return "CL_INVALID_EVENT_WAIT_LIST";
    case -56: return "CL_INVALID_GLOBAL_OFFSET";
    case -55: return "CL_INVALID_WORK_ITEM_SIZE";
    case -54: return "CL_INVALID_WORK_GROUP_SIZE";
    case -53: return "CL_INVALID_WORK_DIMENSION";
    case -52: return "CL_INVALID_KERNEL_ARGS";
    case -51: return "CL_INVALID_ARG_SIZE";
    case -50: return "CL_INVALID_ARG_VALUE";
    case -49: return "CL_INVALID_ARG_INDEX";
    case -48: return "CL_INVALID_KERNEL";
    case -47: return "CL_INVALID_KERNEL_DEFINITION";
    case -46: return "CL_INVALID_KERNEL_NAME";
    case -45: return "CL_INVALID_PROGRAM_EXECUTABLE";
    case -44: return "CL_INVALID_PROGRAM";
    case -43: return "CL_INVALID_BUILD_OPTIONS";
    case -42: return "CL_INVALID_BINARY";
    case -41: return "CL_INVALID_SAMPLER";
    case -40: return "CL_INVALID_IMAGE_SIZE";
    case -39: return "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR";
    case -38: return "CL_INVALID_MEM_OBJECT";
    case -37: return "CL_INVALID_HOST_PTR";
    case -36: return "CL_INVALID_COMMAND_QUEUE";
    case -35: return "CL_INVALID_QUEUE_PROPERTIES";
    case -34: return "CL_INVALID_CONTEXT";
    case -33: return "CL_INVALID_DEVICE";
    case -32: return "CL_INVALID_PLATFORM";
    case -31: return "CL_INVALID_DEVICE_TYPE";
    case -30: return "CL_INVALID_VALUE";
    case -19: return "CL_KERNEL_ARG_INFO_NOT_AVAILABLE";
    case -18: return "CL_DEVICE_PARTITION_FAILED";
    case -17: return "CL_LINK_PROGRAM_FAILURE";
    case -16: return "CL_LINKER_NOT_AVAILABLE";
    case -15: return "CL_COMPILE_PROGRAM_FAILURE";
    case -14: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST";
    case -13: return "CL_MISALIGNED_SUB_BUFFER_OFFSET";
    case -12: return "CL_MAP_FAILURE";
    case -11: return "CL_BUILD_PROGRAM_FAILURE";
    case -10: return "CL_IMAGE_FORMAT_NOT_SUPPORTED";
    case -9: return "CL_IMAGE_FORMAT_MISMATCH";
    case -8: return "CL_MEM_COPY_OVERLAP";
    case -7: return "CL_PROFILING_INFO_NOT_AVAILABLE";
    case -6: return "CL_OUT_OF_HOST_MEMORY";
    case -5: return "CL_OUT_OF_RESOURCES";
    case -4: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case -3: return "CL_COMPILER_NOT_AVAILABLE";
    case -2: return "CL_DEVICE_NOT_AVAILABLE";
    case -1: return "CL_DEVICE_NOT_FOUND";
    case 0: return "CL_SUCCESS";
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return NULL;
    }
}

const char *sge_clblast_status_name(int status) {
    switch (status) {
    case 0: return "CLBlastSuccess";
    case -3: return "CLBlastOpenCLCompilerNotAvailable";
    case -4: return "CLBlastTempBufferAllocFailure";
    case -5: return "CLBlastOpenCLOutOfResources";
    case -6: return "CLBlastOpenCLOutOfHostMemory";
    case -11: return "CLBlastOpenCLBuildProgramFailure";
    case -30: return "CLBlastInvalidValue";
    case -36: return "CLBlastInvalidCommandQueue";
    case -38: return "CLBlastInvalidMemObject";
    case -42: return "CLBlastInvalidBinary";
    case -43: return "CLBlastInvalidBuildOptions";
    case -44: return "CLBlastInvalidProgram";
    case -45: return "CLBlastInvalidProgramExecutable";
    case -46: return "CLBlastInvalidKernelName";
    case -47: return "CLBlastInvalidKernelDefinition";
    case -48: return "CLBlastInvalidKernel";
    case -49: return "CLBlastInvalidArgIndex";
    case -50: return "CLBlastInvalidArgValue";
    case -51: return "CLBlastInvalidArgSize";
    case -52: return "CLBlastInvalidKernelArgs";
    case -53: return "CLBlastInvalidLocalNumDimensions";
    case -54: return "CLBlastInvalidLocalThreadsTotal";
    case -55: return "CLBlastInvalidLocalThreadsDim";
    case -56: return "CLBlastInvalidGlobalOffset";
    case -57: return "CLBlastInvalidEventWaitList";
    case -58: return "CLBlastInvalidEvent";
    case -59: return "CLBlastInvalidOperation";
    case -61: return "CLBlastInvalidBufferSize";
    case -63: return "CLBlastInvalidGlobalWorkSize";
    case -1024: return "CLBlastNotImplemented";
    case -1022: return "CLBlastInvalidMatrixA";
    case -1021: return "CLBlastInvalidMatrixB";
    case -1020: return "CLBlastInvalidMatrixC";
    case -1019: return "CLBlastInvalidVectorX";
    case -1018: return "CLBlastInvalidVectorY";
    case -1017: return "CLBlastInvalidDimension";
    case -1016: return "CLBlastInvalidLeadDimA";
    case -1015: return "CLBlastInvalidLeadDimB";
    case -1014: return "CLBlastInvalidLeadDimC";
    case -1013: return "CLBlastInvalidIncrementX";
    case -1012: return "CLBlastInvalidIncrementY";
    case -1011: return "CLBlastInsufficientMemoryA";
    case -1010: return "CLBlastInsufficientMemoryB";
    case -1009: return "CLBlastInsufficientMemoryC";
    case -1008: return "CLBlastInsufficientMemoryX";
    case -1007: return "CLBlastInsufficientMemoryY";
    case -2050: return "CLBlastInsufficientMemoryTemp";
    case -2049: return "CLBlastInvalidBatchCount";
    case -2048: return "CLBlastInvalidOverrideKernel";
    case -2047: return "CLBlastMissingOverrideParameter";
    case -2046: return "CLBlastInvalidLocalMemUsage";
    case -2045: return "CLBlastNoHalfPrecision";
    case -2044: return "CLBlastNoDoublePrecision";
    case -2043: return "CLBlastInvalidVectorScalar";
    case -2042: return "CLBlastInsufficientMemoryScalar";
    case -2041: return "CLBlastDatabaseError";
    case -2040: return "CLBlastUnknownError";
    case -2039: return "CLBlastUnexpectedError";
    default: return NULL;
    }
}
