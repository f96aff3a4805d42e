// batchnorm.cl: kernels are added with the op family.
