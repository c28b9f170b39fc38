namespace UnifiedDiffusion.Core;

/// <summary>
/// An error caused by the user's input (a bad name, value, file or checkpoint). Its message is a
/// single line that says what is wrong and what to do; the CLI prints it without a stack trace.
/// </summary>
/// <remarks>
/// The library describes the value ("the step count 0 …"), never a command-line flag: a caller
/// that knows how the value was given (the CLI's <c>--steps</c>) names it from <see cref="Subject"/>.
/// </remarks>
public sealed class UdmException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The setting at fault, by its library name (e.g. <c>steps</c>, <c>eta</c>, <c>learningRate</c>), or null.</summary>
    public string? Subject { get; init; }
}
