using System.Buffers.Binary;
using System.Security.Cryptography;
using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;
using Org.BouncyCastle.Crypto.Engines;
using Org.BouncyCastle.Crypto.Parameters;
using X86Aes = System.Runtime.Intrinsics.X86.Aes;

namespace KestrelQuic.Tests.PacketProtection;

public sealed class HeaderProtectionTests
{
    private static byte[] ReferenceAesBlock(byte[] key, ReadOnlySpan<byte> block)
    {
        using var aes = Aes.Create();
        aes.Key = key;
        return aes.EncryptEcb(block, PaddingMode.None);
    }

    [Fact]
    public void AesNi_IsUsedWhenSupported()
    {
        Assert.Equal(X86Aes.IsSupported, AesNiBlockCipher.IsSupported);
        var hp = HeaderProtection.Create(CipherSuite.Aes128GcmSha256, new byte[16]);
        Assert.Equal(AesNiBlockCipher.IsSupported, hp.IsHardwareAccelerated);
        Assert.Equal(AesNiBlockCipher.IsSupported, AesBlockCipher.Create(new byte[32]).IsHardwareAccelerated);
        Assert.False(AesBlockCipher.Create(new byte[32], allowHardwareIntrinsics: false).IsHardwareAccelerated);
    }

    [Theory]
    [InlineData(16, true)]
    [InlineData(32, true)]
    [InlineData(16, false)]
    [InlineData(32, false)]
    public void AesBlock_MatchesEncryptEcb_OnRandomKeysAndBlocks(int keyLength, bool allowIntrinsics)
    {
        var random = new Random(keyLength * 31 + (allowIntrinsics ? 1 : 0));
        byte[] key = new byte[keyLength];
        byte[] block = new byte[16];
        byte[] output = new byte[16];
        for (int k = 0; k < 200; k++)
        {
            random.NextBytes(key);
            AesBlockCipher cipher = AesBlockCipher.Create(key, allowIntrinsics);
            for (int b = 0; b < 8; b++)
            {
                random.NextBytes(block);
                cipher.EncryptBlock(block, output);
                Assert.Equal(ReferenceAesBlock(key, block), output);
            }
        }
    }

    [Fact]
    public void AesBlock_Fips197AppendixC_KnownAnswers()
    {
        // FIPS 197 Appendix C.1 (AES-128) and C.3 (AES-256).
        byte[] plaintext = Convert.FromHexString("00112233445566778899aabbccddeeff");
        byte[] output = new byte[16];
        foreach (bool intrinsics in new[] { true, false })
        {
            AesBlockCipher.Create(Convert.FromHexString("000102030405060708090a0b0c0d0e0f"), intrinsics).EncryptBlock(plaintext, output);
            Assert.Equal("69c4e0d86a7b0430d8cdb78070b4c55a", Hex.Format(output));
            AesBlockCipher.Create(Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"), intrinsics).EncryptBlock(plaintext, output);
            Assert.Equal("8ea2b7ca516745bfeafc49904b496089", Hex.Format(output));
        }
    }

    [Theory]
    [InlineData(CipherSuite.Aes128GcmSha256, true)]
    [InlineData(CipherSuite.Aes256GcmSha384, true)]
    [InlineData(CipherSuite.Aes128GcmSha256, false)]
    [InlineData(CipherSuite.Aes256GcmSha384, false)]
    public void AesMask_IsFirstFiveBytesOfEcb(CipherSuite suite, bool allowIntrinsics)
    {
        var random = new Random((int)suite);
        byte[] key = new byte[CipherSuiteInfo.KeyLength(suite)];
        byte[] sample = new byte[16];
        byte[] mask = new byte[5];
        for (int i = 0; i < 300; i++)
        {
            random.NextBytes(key);
            random.NextBytes(sample);
            HeaderProtection.Create(suite, key, allowIntrinsics).ComputeMask(sample, mask);
            Assert.Equal(ReferenceAesBlock(key, sample).AsSpan(0, 5).ToArray(), mask);
        }
    }

    [Fact]
    public void ChaCha20Block_Rfc8439Section232_KnownAnswer()
    {
        byte[] key = new byte[32];
        for (int i = 0; i < key.Length; i++) key[i] = (byte)i;
        byte[] nonce = Convert.FromHexString("000000090000004a00000000");
        byte[] block = new byte[64];
        new ChaCha20Block(key).Compute(1, nonce, block);
        Assert.Equal(
            "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e" +
            "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e",
            Hex.Format(block));
    }

    [Fact]
    public void ChaCha20Mask_MatchesBouncyCastleKeystream()
    {
        var random = new Random(8439);
        byte[] key = new byte[32];
        byte[] sample = new byte[16];
        byte[] mask = new byte[5];
        for (int i = 0; i < 200; i++)
        {
            random.NextBytes(key);
            random.NextBytes(sample);
            // Keep the counter small so the reference can reach that block by generating the keystream from counter 0.
            uint counter = (uint)random.Next(0, 8);
            BinaryPrimitives.WriteUInt32LittleEndian(sample, counter);

            var engine = new ChaCha7539Engine();
            engine.Init(true, new ParametersWithIV(new KeyParameter(key), sample.AsSpan(4).ToArray()));
            byte[] keystream = new byte[(counter + 1) * 64];
            engine.ProcessBytes(new byte[keystream.Length], 0, keystream.Length, keystream, 0);

            HeaderProtection.Create(CipherSuite.ChaCha20Poly1305Sha256, key).ComputeMask(sample, mask);
            Assert.Equal(keystream.AsSpan((int)counter * 64, 5).ToArray(), mask);
        }
    }

    [Theory]
    [InlineData(CipherSuite.Aes128GcmSha256)]
    [InlineData(CipherSuite.Aes256GcmSha384)]
    [InlineData(CipherSuite.ChaCha20Poly1305Sha256)]
    public void ProtectThenUnprotect_RoundTrips_LongAndShortHeaders(CipherSuite suite)
    {
        var random = new Random(42);
        byte[] key = new byte[CipherSuiteInfo.KeyLength(suite)];
        random.NextBytes(key);
        HeaderProtection hp = HeaderProtection.Create(suite, key);
        for (int i = 0; i < 500; i++)
        {
            bool longHeader = (i & 1) == 0;
            int pnOffset = random.Next(1, 60);
            int pnLength = random.Next(1, 5);
            byte[] packet = new byte[pnOffset + 4 + 16 + random.Next(0, 40)];
            random.NextBytes(packet);
            packet[0] = (byte)((longHeader ? 0xc0 : 0x40) | (packet[0] & 0x3c) | (pnLength - 1));
            byte[] original = (byte[])packet.Clone();

            hp.Protect(packet, pnOffset, pnLength);
            Assert.Equal(original[0] & (longHeader ? 0xf0 : 0xe0), packet[0] & (longHeader ? 0xf0 : 0xe0));
            Assert.Equal(original.AsSpan(1, pnOffset - 1).ToArray(), packet.AsSpan(1, pnOffset - 1).ToArray());
            Assert.Equal(original.AsSpan(pnOffset + pnLength).ToArray(), packet.AsSpan(pnOffset + pnLength).ToArray());

            Assert.True(hp.TryUnprotect(packet, pnOffset, out int recoveredLength));
            Assert.Equal(pnLength, recoveredLength);
            Assert.Equal(original, packet);
        }
    }

    [Fact]
    public void TryUnprotect_FalseWhenTooShortForSample_AtEveryLength()
    {
        HeaderProtection hp = HeaderProtection.Create(CipherSuite.Aes128GcmSha256, new byte[16]);
        const int pnOffset = 9;
        for (int length = 1; length < pnOffset + 20; length++)
        {
            byte[] packet = new byte[length];
            packet[0] = 0x43;
            Assert.False(hp.TryUnprotect(packet, pnOffset, out _));
            Assert.Equal(0x43, packet[0]);
        }

        Assert.True(hp.TryUnprotect(new byte[pnOffset + 20], pnOffset, out _));
    }

    [Fact]
    public void Create_RejectsWrongKeyLength()
    {
        Assert.Throws<ArgumentException>(() => HeaderProtection.Create(CipherSuite.Aes128GcmSha256, new byte[32]));
        Assert.Throws<ArgumentException>(() => HeaderProtection.Create(CipherSuite.Aes256GcmSha384, new byte[16]));
        Assert.Throws<ArgumentException>(() => HeaderProtection.Create(CipherSuite.ChaCha20Poly1305Sha256, new byte[16]));
        Assert.Throws<ArgumentException>(() => HeaderProtection.Create(CipherSuite.Aes128GcmSha256, new byte[16]).Protect(new byte[20], 1, 1));
    }
}
