using System.Buffers;
using System.Text;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

/// <summary>Collects decoded field lines as Latin-1 strings.</summary>
internal sealed class FieldCollector : IQpackFieldHandler
{
    public List<(string Name, string Value)> Fields { get; } = [];

    public void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) =>
        Fields.Add((Encoding.Latin1.GetString(name), Encoding.Latin1.GetString(value)));
}

internal static class QpackTestExtensions
{
    public static string DrainDecoderStream(this QpackDecoder decoder)
    {
        var writer = new ArrayBufferWriter<byte>();
        decoder.WriteDecoderInstructions(writer);
        return Convert.ToHexStringLower(writer.WrittenSpan);
    }

    public static void FeedEncoderStream(this QpackDecoder decoder, string hex)
    {
        Assert.True(decoder.ProcessEncoderStream(Convert.FromHexString(hex.Replace(" ", "")), out QpackError error), error.ToString());
    }

    public static (QpackDecodeResult Result, List<(string Name, string Value)> Fields) Decode(this QpackDecoder decoder, long streamId, string hex)
    {
        var collector = new FieldCollector();
        QpackDecodeResult result = decoder.DecodeFieldSection(streamId, Convert.FromHexString(hex.Replace(" ", "")), collector);
        return (result, collector.Fields);
    }
}
