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

        IReadOnlyList<string> errors = candidate.Validate();
        return errors.Count == 0
            ? ValidateOptionsResult.Success
            : ValidateOptionsResult.Fail(errors.Select(static e => $"{WebHostBuilderManagedQuicExtensions.ConfigurationSectionName}:{e}"));
    }
}
