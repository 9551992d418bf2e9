namespace KestrelQuic.Tests;

/// <summary>
/// Tests that count allocated bytes run alone: pooled buffers are process-wide, so a test running in parallel can
/// drain a pool and make the measured code allocate replacements that are not its own steady-state cost.
/// </summary>
[CollectionDefinition(nameof(AllocationMeasurementCollection), DisableParallelization = true)]
public sealed class AllocationMeasurementCollection
{
}
