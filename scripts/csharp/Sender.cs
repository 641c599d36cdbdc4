// A FUP client that behaves on the wire as PROTOCOL.md says the C# FileSender programs do,
// written for fup's interop checks (scripts/interop-csharp.sh). Not the book's code.
//   mono Sender.exe HOST PORT PATH [--cp949] [--accept-byte 0|1]
// Exit status: 0 stored, 1 denied or failed, 2 usage or connection trouble.
using System;
using System.IO;
using System.Net.Sockets;
using System.Text;

static class Sender
{
    static byte[] Header(uint id, uint type, uint len, byte frag, byte last, ushort seq)
    {
        var h = new byte[16];
        BitConverter.GetBytes(id).CopyTo(h, 0);
        BitConverter.GetBytes(type).CopyTo(h, 4);
        BitConverter.GetBytes(len).CopyTo(h, 8);
        h[12] = frag;
        h[13] = last;
        BitConverter.GetBytes(seq).CopyTo(h, 14);
        return h;
    }

    static byte[] ReadExactly(NetworkStream s, int n)
    {
        var buf = new byte[n];
        int got = 0;
        while (got < n)
        {
            int r = s.Read(buf, got, n - got);
            if (r == 0) throw new EndOfStreamException("server closed after " + got + " of " + n + " bytes");
            got += r;
        }
        return buf;
    }

    static int Main(string[] args)
    {
        if (args.Length < 3) { Console.Error.WriteLine("usage: Sender HOST PORT PATH [--cp949] [--accept-byte 0|1]"); return 2; }
        bool cp949 = Array.IndexOf(args, "--cp949") >= 0;
        int at = Array.IndexOf(args, "--accept-byte");
        byte accepted = at >= 0 ? byte.Parse(args[at + 1]) : (byte)0;
        byte denied = (byte)(1 - accepted);
        string path = args[2];
        // The name is the path exactly as typed; CP949 as on Korean Windows (.NET Framework).
        Encoding enc = cp949 ? Encoding.GetEncoding(949) : new UTF8Encoding(false);
        byte[] name = enc.GetBytes(path);
        byte[] file = File.ReadAllBytes(path);
        using (var client = new TcpClient(args[0], int.Parse(args[1])))
        using (var s = client.GetStream())
        {
            var req = new MemoryStream();
            req.Write(Header(0, 1, (uint)(8 + name.Length), 0, 1, 0), 0, 16);
            req.Write(BitConverter.GetBytes((ulong)file.Length), 0, 8);
            req.Write(name, 0, name.Length);
            s.Write(req.ToArray(), 0, (int)req.Length);
            byte[] rep = ReadExactly(s, 21);
            // Any byte other than its own "denied" is read as go ahead.
            if (rep[20] == denied) { Console.WriteLine("denied"); return 1; }
            byte frag = (byte)(file.Length >= 4096 ? 1 : 0);
            ushort seq = 0;
            for (int off = 0; off < file.Length; off += 4096)
            {
                int n = Math.Min(4096, file.Length - off);
                byte last = (byte)(off + n == file.Length ? 1 : 0);
                s.Write(Header(1, 3, (uint)n, frag, last, seq), 0, 16);
                s.Write(file, off, n);
                unchecked { seq++; }
            }
            byte[] res = ReadExactly(s, 21);
            bool ok = res[20] == 1;
            Console.WriteLine(ok ? "success" : "failure");
            return ok ? 0 : 1;
        }
    }
}
