// C shim over OpenCL 1.2 and CLBlast. No Swift names here: only the C APIs and a few helpers
// that Swift cannot express directly (status-code names).
#ifndef SGE_COPENCL_H
#define SGE_COPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <clblast_c.h>

/// The symbolic name of an OpenCL status code ("CL_INVALID_WORK_GROUP_SIZE"), or NULL if unknown.
const char *sge_cl_status_name(cl_int status);

/// The symbolic name of a CLBlast status code ("CLBlastInvalidLocalMemUsage"), or NULL if unknown.
/// CLBlast reuses OpenCL's codes for OpenCL failures; those get the CLBlast spelling here.
const char *sge_clblast_status_name(int status);

#endif
