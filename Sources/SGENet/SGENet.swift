public enum SGENet {}
