using System.Runtime.CompilerServices;

namespace KestrelQuic.Tests;

/// <summary>Process-wide settings for the test run.</summary>
internal static class TestAssemblySetup
{
    /// <summary>
    /// On a two-core machine the thread pool starts with two workers, and the test host keeps one of them blocked
    /// (its message loop polls a socket for a second at a time). Loopback tests with sub-second idle timeouts then
    /// stalled until the pool injected a thread (~0.5 s) and timed out; the same scenario in a plain console app
    /// never does. More workers from the start take the test host out of the picture.
    /// </summary>
    [ModuleInitializer]
    internal static void RaiseMinimumThreadPoolThreads()
    {
        ThreadPool.GetMinThreads(out int workers, out int io);
        if (workers < 8) ThreadPool.SetMinThreads(8, io);
    }
}
