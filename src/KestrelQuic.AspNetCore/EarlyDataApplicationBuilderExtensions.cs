using KestrelQuic.AspNetCore;
using Microsoft.AspNetCore.Http;

namespace Microsoft.AspNetCore.Builder;

/// <summary>
/// The 0-RTT policy of RFC 8470 for HTTP/3 served by the managed transport: requests that arrived in early data run
/// only when their method is safe (GET, HEAD, OPTIONS, TRACE) or their endpoint carries
/// <see cref="AllowEarlyDataAttribute"/>; the others get <c>425 Too Early</c>, which tells the client to send them again
/// after the handshake.
/// </summary>
public static class EarlyDataApplicationBuilderExtensions
{
    // RFC 8470 §5.2 (StatusCodes has no constant for it).
    private const int TooEarly = 425;

    /// <summary>
    /// Adds the early data policy to the pipeline. Place it after <c>UseRouting</c> (a <see cref="WebApplication"/>
    /// routes first anyway) so that endpoint metadata is seen, and before anything that acts on the request. A request
    /// counts as early when <see cref="IManagedQuicStreamFeature.IsEarlyData"/> says so or an intermediary marked it
    /// with <c>Early-Data: 1</c> (RFC 8470 §5.1).
    /// </summary>
    public static IApplicationBuilder UseEarlyDataPolicy(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.Use(static (context, next) =>
        {
            if (!IsEarly(context) || IsSafe(context.Request.Method) || context.GetEndpoint()?.Metadata.GetMetadata<AllowEarlyDataAttribute>() is not null)
            {
                return next(context);
            }

            context.Response.StatusCode = TooEarly;
            return Task.CompletedTask;
        });
    }

    /// <summary>Marks the endpoints of <paramref name="builder"/> safe to run on requests received in 0-RTT (<see cref="AllowEarlyDataAttribute"/>).</summary>
    public static TBuilder AllowEarlyData<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Add(static endpoint => endpoint.Metadata.Add(new AllowEarlyDataAttribute()));
        return builder;
    }

    private static bool IsEarly(HttpContext context)
        => context.Features.Get<IManagedQuicStreamFeature>()?.IsEarlyData == true || context.Request.Headers["Early-Data"] == "1";

    // RFC 9110 §9.2.1: safe methods change nothing on the server, so a replay of them does no harm.
    private static bool IsSafe(string method)
        => HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method) || HttpMethods.IsTrace(method);
}
