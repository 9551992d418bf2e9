using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.PacketProtection;

/// <summary>The per-packet path (protect, header protection removal, payload decryption) must not allocate.</summary>
[Collection(nameof(AllocationMeasurementCollection))]
public sealed class AllocationTests
{
    private const int Iterations = 1000;

    [Theory]
    [InlineData(CipherSuite.Aes128GcmSha256, true)]
    [InlineData(CipherSuite.Aes256GcmSha384, true)]
    [InlineData(CipherSuite.Aes128GcmSha256, false)]
    [InlineData(CipherSuite.ChaCha20Poly1305Sha256, true)]
    public void ProtectAndUnprotect_AllocateNothingAfterWarmUp(CipherSuite suite, bool allowIntrinsics)
    {
        byte[] secret = new byte[CipherSuiteInfo.HashLength(suite)];
        new Random(1).NextBytes(secret);
        using PacketProtectionKeys keys = PacketProtectionKeys.FromSecret(suite, secret, QuicVersion.Version1, allowIntrinsics);
        const int pnOffset = 9, pnLength = 2, payloadLength = 1200;
        byte[] packet = new byte[pnOffset + pnLength + payloadLength + 16];
        byte[] mask = new byte[5];

        // Warm up: JIT, platform AEAD context initialisation, tiering.
        RunOnce(keys, packet, 0, mask);
        for (int i = 1; i < 100; i++) RunOnce(keys, packet, i, mask);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Iterations; i++)
        {
            RunOnce(keys, packet, 100 + i, mask);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);

        static void RunOnce(PacketProtectionKeys keys, byte[] packet, long packetNumber, byte[] mask)
        {
            packet[0] = 0x40 | (pnLength - 1);
            PacketNumberEncoding.Write(packet.AsSpan(pnOffset), packetNumber, pnLength);
            int length = PacketProtector.Protect(keys, packet, pnOffset, pnLength, payloadLength, packetNumber);
            keys.HeaderProtection.ComputeMask(packet.AsSpan(pnOffset + 4, 16), mask);
            if (!PacketProtector.TryRemoveHeaderProtection(keys.HeaderProtection, packet.AsSpan(0, length), pnOffset, packetNumber - 1, out long pn, out int pnLen)
                || !PacketProtector.TryDecryptPayload(keys.Aead, packet.AsSpan(0, length), pnOffset + pnLen, pn, out int decrypted)
                || decrypted != payloadLength)
            {
                throw new InvalidOperationException("round trip failed");
            }
        }
    }
}
