/// The CPU reference backend: plain Swift loops with Double accumulation. It is the specification
/// every OpenCL kernel is checked against, and it runs where no OpenCL device exists. One file per
/// op family, each opening with the maths it implements; functions carry the kernel's name.
public enum Reference {}
