namespace KestrelQuic.PacketProtection;

/// <summary>Packet number truncation and recovery (RFC 9000 §17.1, Appendix A.2 and A.3).</summary>
internal static class PacketNumberEncoding
{
    /// <summary>Largest packet number (RFC 9000 §12.3: 0 to 2^62 - 1).</summary>
    public const long MaxPacketNumber = (1L << 62) - 1;

    /// <summary>
    /// Number of bytes (1-4) needed to encode <paramref name="packetNumber"/> so that the encoding represents more than
    /// twice the range between it and <paramref name="largestAcknowledged"/> (-1 when nothing was acknowledged) (RFC 9000 §17.1).
    /// </summary>
    public static int GetLength(long packetNumber, long largestAcknowledged)
    {
        if ((ulong)packetNumber > MaxPacketNumber) throw new ArgumentOutOfRangeException(nameof(packetNumber));
        if (largestAcknowledged < -1 || largestAcknowledged >= packetNumber) throw new ArgumentOutOfRangeException(nameof(largestAcknowledged));

        // num_unacked = full_pn - largest_acked, or full_pn + 1 when nothing has been acknowledged (Appendix A.2).
        ulong twiceRange = 2 * (ulong)(packetNumber - largestAcknowledged);
        if (twiceRange < 1UL << 8) return 1;
        if (twiceRange < 1UL << 16) return 2;
        if (twiceRange < 1UL << 24) return 3;
        return 4;
    }

    /// <summary>The <paramref name="length"/> least significant bytes of <paramref name="packetNumber"/>.</summary>
    public static long Truncate(long packetNumber, int length)
    {
        if ((uint)length - 1 > 3) throw new ArgumentOutOfRangeException(nameof(length));
        return packetNumber & ((1L << (8 * length)) - 1);
    }

    /// <summary>Writes the truncated packet number big-endian into <paramref name="destination"/>[0..length].</summary>
    public static void Write(Span<byte> destination, long packetNumber, int length)
    {
        if ((uint)length - 1 > 3) throw new ArgumentOutOfRangeException(nameof(length));
        for (int i = length - 1; i >= 0; i--)
        {
            destination[i] = (byte)packetNumber;
            packetNumber >>= 8;
        }
    }

    /// <summary>Reads a big-endian truncated packet number of <paramref name="length"/> bytes.</summary>
    public static long Read(ReadOnlySpan<byte> source, int length)
    {
        if ((uint)length - 1 > 3) throw new ArgumentOutOfRangeException(nameof(length));
        long value = 0;
        for (int i = 0; i < length; i++)
        {
            value = (value << 8) | source[i];
        }

        return value;
    }

    /// <summary>
    /// Recovers the full packet number closest to <paramref name="largestPacketNumber"/> + 1 (-1 when none was processed)
    /// (RFC 9000 Appendix A.3).
    /// </summary>
    public static long Decode(long largestPacketNumber, long truncatedPacketNumber, int packetNumberLengthBytes)
    {
        if ((uint)packetNumberLengthBytes - 1 > 3) throw new ArgumentOutOfRangeException(nameof(packetNumberLengthBytes));
        long expected = largestPacketNumber + 1;
        long window = 1L << (8 * packetNumberLengthBytes);
        long halfWindow = window / 2;
        long mask = window - 1;
        long candidate = (expected & ~mask) | (truncatedPacketNumber & mask);
        if (candidate <= expected - halfWindow && candidate < (1L << 62) - window)
        {
            return candidate + window;
        }

        if (candidate > expected + halfWindow && candidate >= window)
        {
            return candidate - window;
        }

        return candidate;
    }
}
