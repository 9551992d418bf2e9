using KestrelQuic.Configuration;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Options;

namespace KestrelQuic.AspNetCore;

/// <summary>Runs <see cref="QuicConfiguration.Validate"/> at start-up, naming each bad setting by its configuration key.</summary>
internal sealed class QuicConfigurationValidator : IValidateOptions<QuicConfiguration>
{
    public ValidateOptionsResult Validate(string? name, QuicConfiguration options)
    {
        QuicConfiguration candidate = options;
        if (options.ApplicationProtocols.Count == 0)
        {
            // ALPN comes from Kestrel at bind time (h3), not from configuration.
            candidate = options.Clone();
            candidate.ApplicationProtocols.Add("h3");
        }

        var errors = new List<string>(candidate.Validate());

        // HTTP/3 needs request streams, and room for the client's control and two QPACK streams (RFC 9114 §6.2).
        if (options.MaxBidirectionalStreams < 1) errors.Add($"{nameof(QuicConfiguration.MaxBidirectionalStreams)} must be at least 1 for HTTP/3 requests (was {options.MaxBidirectionalStreams}).");
        if (options.MaxUnidirectionalStreams < 3) errors.Add($"{nameof(QuicConfiguration.MaxUnidirectionalStreams)} must be at least 3 for HTTP/3's control and QPACK streams (was {options.MaxUnidirectionalStreams}).");
        return errors.Count == 0
            ? ValidateOptionsResult.Success
            : ValidateOptionsResult.Fail(errors.Select(static e => $"{WebHostBuilderManagedQuicExtensions.ConfigurationSectionName}:{e}"));
    }
}
