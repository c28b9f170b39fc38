namespace UnifiedDiffusion.Core;

/// <summary>
/// An error caused by the user's input (a bad name, value, file or checkpoint). Its message is a
/// single line that says what is wrong and what to do; the CLI prints it without a stack trace.
/// </summary>
public sealed class UdmException(string message, Exception? inner = null) : Exception(message, inner);
