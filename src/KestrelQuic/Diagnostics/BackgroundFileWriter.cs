using System.Buffers;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Diagnostics;

/// <summary>
/// Appends buffers to files on one background task, so that secrets and qlog output never block the endpoint
/// (the buffers come from <see cref="ArrayPool{T}.Shared"/> and go back after writing).
/// </summary>
internal static class BackgroundFileWriter
{
    private static readonly Channel<Request> s_requests = Channel.CreateUnbounded<Request>(new UnboundedChannelOptions { SingleReader = true });
    private static int s_started;
    private static long s_pending;

    /// <summary>Queues <paramref name="length"/> bytes of <paramref name="rented"/> (returned to the pool afterwards).</summary>
    public static void Append(string path, byte[] rented, int length, ILogger? logger)
    {
        if (Interlocked.Exchange(ref s_started, 1) == 0)
        {
            _ = Task.Factory.StartNew(RunAsync, CancellationToken.None, TaskCreationOptions.DenyChildAttach | TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        }

        Interlocked.Increment(ref s_pending);
        s_requests.Writer.TryWrite(new Request(path, rented, length, logger));
    }

    /// <summary>Waits until everything queued so far is written (tests, shutdown).</summary>
    public static async Task DrainAsync(CancellationToken cancellationToken = default)
    {
        while (Interlocked.Read(ref s_pending) > 0) await Task.Delay(10, cancellationToken).ConfigureAwait(false);
    }

    private static async Task RunAsync()
    {
        ChannelReader<Request> reader = s_requests.Reader;
        var batch = new List<Request>();
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < 256 && reader.TryRead(out Request r)) batch.Add(r);

            // One open per file per batch: qlog records of a busy connection arrive in many buffers.
            foreach (IGrouping<string, Request> file in batch.GroupBy(r => r.Path, StringComparer.Ordinal))
            {
                try
                {
                    using FileStream stream = Open(file.Key);
                    foreach (Request r in file) stream.Write(r.Buffer, 0, r.Length);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
                {
                    ILogger? logger = file.First().Logger;
                    if (logger is not null)
                    {
                        if (file.Key.EndsWith(".sqlog", StringComparison.Ordinal)) QuicLog.QlogWriteFailed(logger, e, file.Key);
                        else QuicLog.SecretsLogWriteFailed(logger, e, file.Key);
                    }
                }
            }

            foreach (Request r in batch)
            {
                ArrayPool<byte>.Shared.Return(r.Buffer);
                Interlocked.Decrement(ref s_pending);
            }
        }
    }

    private static FileStream Open(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
        }
        catch (DirectoryNotFoundException)
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
            return new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
        }
    }

    private readonly record struct Request(string Path, byte[] Buffer, int Length, ILogger? Logger);
}
