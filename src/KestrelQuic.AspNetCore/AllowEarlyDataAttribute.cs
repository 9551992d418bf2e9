namespace KestrelQuic.AspNetCore;

/// <summary>
/// Endpoint metadata: the endpoint is safe to run on a request received in 0-RTT even though its method is not
/// (e.g. an idempotent POST), so <see cref="Microsoft.AspNetCore.Builder.EarlyDataApplicationBuilderExtensions.UseEarlyDataPolicy"/>
/// lets such requests through. Mark only what the application can afford to see twice.
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Method, AllowMultiple = false, Inherited = true)]
public sealed class AllowEarlyDataAttribute : Attribute
{
}
