using System.Buffers;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Diagnostics;

/// <summary>What a buffer handed to <see cref="BackgroundFileWriter"/> holds (its drop policy and its log messages).</summary>
internal enum TraceOutput
{
    Qlog,
    SecretsLog,
}

/// <summary>
/// Appends buffers to files on one background task, so that secrets and qlog output never block the endpoint
/// (the buffers come from <see cref="ArrayPool{T}.Shared"/> and go back after writing). The bytes queued are capped:
/// when the disk is slower than the connections, qlog buffers beyond <see cref="MaxPendingBytes"/> are dropped (and
/// counted) instead of blocking the caller or growing memory without bound. Secrets log lines may use some headroom
/// above the cap (a missing line makes a whole connection undecryptable, and they are a few hundred bytes per
/// connection), then they are dropped too.
/// </summary>
internal sealed class BackgroundFileWriter
{
    /// <summary>Default cap on queued bytes: a few hundred qlog buffers of busy connections.</summary>
    public const long DefaultMaxPendingBytes = 32L << 20;

    private static long s_droppedQlogBytes;
    private static long s_droppedSecretsBytes;

    private readonly Channel<Request> _requests = Channel.CreateUnbounded<Request>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Func<string, Stream> _open;
    private int _started;
    private long _pendingBuffers;
    private long _pendingBytes;
    private long _droppedBytes;
    private int _dropping;

    public BackgroundFileWriter(long maxPendingBytes, Func<string, Stream>? open = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPendingBytes);
        MaxPendingBytes = maxPendingBytes;
        _open = open ?? OpenFile;
    }

    /// <summary>The process's writer (qlog and secrets log files).</summary>
    public static BackgroundFileWriter Shared { get; } = new(DefaultMaxPendingBytes);

    /// <summary>qlog bytes dropped by every writer of the process (the kestrelquic.trace.dropped metric).</summary>
    public static long TotalDroppedQlogBytes => Interlocked.Read(ref s_droppedQlogBytes);

    /// <summary>Secrets log bytes dropped by every writer of the process.</summary>
    public static long TotalDroppedSecretsBytes => Interlocked.Read(ref s_droppedSecretsBytes);

    public long MaxPendingBytes { get; }

    /// <summary>Bytes queued and not yet written.</summary>
    public long PendingBytes => Interlocked.Read(ref _pendingBytes);

    /// <summary>Bytes this writer dropped because the queue was full.</summary>
    public long DroppedBytes => Interlocked.Read(ref _droppedBytes);

    /// <summary>
    /// Queues <paramref name="length"/> bytes of <paramref name="rented"/> (returned to the pool afterwards), or drops
    /// them at once when the queue is full: returns false then. Never blocks.
    /// </summary>
    public bool Append(string path, byte[] rented, int length, TraceOutput kind, ILogger? logger)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            _ = Task.Factory.StartNew(RunAsync, CancellationToken.None, TaskCreationOptions.DenyChildAttach | TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        }

        long limit = kind == TraceOutput.SecretsLog ? MaxPendingBytes + (MaxPendingBytes / 8) : MaxPendingBytes;
        if (Interlocked.Add(ref _pendingBytes, length) > limit)
        {
            Interlocked.Add(ref _pendingBytes, -length);
            ArrayPool<byte>.Shared.Return(rented);
            Interlocked.Add(ref _droppedBytes, length);
            if (kind == TraceOutput.Qlog) Interlocked.Add(ref s_droppedQlogBytes, length);
            else Interlocked.Add(ref s_droppedSecretsBytes, length);

            // One warning per backlog: the flag is cleared when the queue has drained.
            if (logger is not null && Interlocked.Exchange(ref _dropping, 1) == 0) QuicLog.TraceOutputDropped(logger, kind == TraceOutput.Qlog ? "qlog" : "secrets log", path, MaxPendingBytes);
            return false;
        }

        Interlocked.Increment(ref _pendingBuffers);
        _requests.Writer.TryWrite(new Request(path, rented, length, kind, logger));
        return true;
    }

    /// <summary>Waits until everything queued so far is written (tests, shutdown).</summary>
    public async Task DrainAsync(CancellationToken cancellationToken = default)
    {
        while (Interlocked.Read(ref _pendingBuffers) > 0) await Task.Delay(10, cancellationToken).ConfigureAwait(false);
    }

    private async Task RunAsync()
    {
        ChannelReader<Request> reader = _requests.Reader;
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
                    using Stream stream = _open(file.Key);
                    foreach (Request r in file) stream.Write(r.Buffer, 0, r.Length);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
                {
                    Request first = file.First();
                    if (first.Logger is { } logger)
                    {
                        if (first.Kind == TraceOutput.Qlog) QuicLog.QlogWriteFailed(logger, e, file.Key);
                        else QuicLog.SecretsLogWriteFailed(logger, e, file.Key);
                    }
                }
            }

            foreach (Request r in batch)
            {
                ArrayPool<byte>.Shared.Return(r.Buffer);
                Interlocked.Add(ref _pendingBytes, -r.Length);
                Interlocked.Decrement(ref _pendingBuffers);
            }

            if (Interlocked.Read(ref _pendingBuffers) == 0) Volatile.Write(ref _dropping, 0);
        }
    }

    private static FileStream OpenFile(string path)
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

    private readonly record struct Request(string Path, byte[] Buffer, int Length, TraceOutput Kind, ILogger? Logger);
}
