using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace KestrelQuic.Http.Connections;

/// <summary>A client QUIC connection as a <see cref="MultiplexedConnectionContext"/>.</summary>
internal sealed class QuicMultiplexedConnectionContext : MultiplexedConnectionContext, IProtocolErrorCodeFeature
{
    private readonly QuicConnection _connection;
    private readonly long _defaultStreamErrorCode;
    private readonly long _defaultCloseErrorCode;
    private readonly CancellationTokenSource _closed = new();
    private long _error = -1;

    public QuicMultiplexedConnectionContext(QuicConnection connection, long defaultStreamErrorCode, long defaultCloseErrorCode)
    {
        _connection = connection;
        _defaultStreamErrorCode = defaultStreamErrorCode;
        _defaultCloseErrorCode = defaultCloseErrorCode;
        ConnectionId = "quic-" + connection.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Features = new FeatureCollection();
        Features.Set<IProtocolErrorCodeFeature>(this);
        LocalEndPoint = connection.LocalEndPoint;
        RemoteEndPoint = connection.RemoteEndPoint;
        ConnectionClosed = _closed.Token;
        _ = connection.Closed.ContinueWith(static (_, s) => ((CancellationTokenSource)s!).Cancel(), _closed, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public override string ConnectionId { get; set; }

    public override IFeatureCollection Features { get; }

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    /// <summary>The application error code to close with; -1 until set (then <see cref="QuicConnectionFactoryOptions.DefaultCloseErrorCode"/> is used).</summary>
    public long Error
    {
        get => _error;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, -1);
            _error = value;
        }
    }

    public override void Abort() => Abort(new ConnectionAbortedException("The connection was aborted by the application."));

    public override void Abort(ConnectionAbortedException abortReason) =>
        _ = _connection.CloseAsync(_error >= 0 ? _error : _defaultCloseErrorCode).AsTask();

    public override async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            QuicStream stream = await _connection.AcceptInboundStreamAsync(cancellationToken).ConfigureAwait(false);
            return new QuicStreamContext(stream, _connection, _defaultStreamErrorCode, ownsConnection: false, _defaultCloseErrorCode);
        }
        catch (QuicException)
        {
            // The connection closed: no more streams.
            return null;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>Opens a stream: bidirectional, or unidirectional when an <see cref="IStreamDirectionFeature"/> in <paramref name="features"/> says write-only.</summary>
    public override async ValueTask<ConnectionContext> ConnectAsync(IFeatureCollection? features = null, CancellationToken cancellationToken = default)
    {
        IStreamDirectionFeature? direction = features?.Get<IStreamDirectionFeature>();
        QuicStreamType type = direction is { CanWrite: true, CanRead: false } ? QuicStreamType.Unidirectional : QuicStreamType.Bidirectional;
        QuicStream stream = await _connection.OpenOutboundStreamAsync(type, cancellationToken).ConfigureAwait(false);
        return new QuicStreamContext(stream, _connection, _defaultStreamErrorCode, ownsConnection: false, _defaultCloseErrorCode);
    }

    public override async ValueTask DisposeAsync()
    {
        await _connection.CloseAsync(_error >= 0 ? _error : _defaultCloseErrorCode).ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
        _closed.Dispose();
    }
}
