// A FUP server that behaves on the wire as PROTOCOL.md says the C# FileReceiver programs do,
// written for fup's interop checks (scripts/interop-csharp.sh). Not the book's code.
//   mono Receiver.exe PORT DIR ACCEPT_BYTE ANSWERS      (ANSWERS: y/n per connection, "yny")
// Serves one connection at a time, len(ANSWERS) of them, then exits.
using System;
using System.IO;
using System.Net;
using System.Net.Sockets;

static class Receiver
{
    static uint counter; // reply msgids: one counter for the whole process

    static byte[] Header(uint id, uint type, uint len)
    {
        var h = new byte[16];
        BitConverter.GetBytes(id).CopyTo(h, 0);
        BitConverter.GetBytes(type).CopyTo(h, 4);
        BitConverter.GetBytes(len).CopyTo(h, 8);
        h[13] = 1; // last
        return h;
    }

    static byte[] ReadExactly(NetworkStream s, int n)
    {
        var buf = new byte[n];
        int got = 0;
        while (got < n)
        {
            int r = s.Read(buf, got, n - got);
            if (r == 0) throw new EndOfStreamException();
            got += r;
        }
        return buf;
    }

    static void Reply(NetworkStream s, uint type, uint id, byte b)
    {
        var m = new byte[21];
        Header(counter++, type, 5).CopyTo(m, 0);
        BitConverter.GetBytes(id).CopyTo(m, 16);
        m[20] = b;
        s.Write(m, 0, 21);
    }

    static int Main(string[] args)
    {
        int port = int.Parse(args[0]);
        string dir = args[1];
        byte accepted = byte.Parse(args[2]);
        string answers = args[3];
        var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        Console.WriteLine("listening on 127.0.0.1:" + ((IPEndPoint)listener.LocalEndpoint).Port);
        for (int turn = 0; turn < answers.Length; turn++)
        {
            char answer = answers[turn];
            using (var client = listener.AcceptTcpClient())
            using (var s = client.GetStream())
            {
                byte[] h = ReadExactly(s, 16);
                uint reqId = BitConverter.ToUInt32(h, 0);
                byte[] body = ReadExactly(s, (int)BitConverter.ToUInt32(h, 8));
                if (BitConverter.ToUInt32(h, 4) != 1)
                {
                    // Not a request (fup's secure-mode probe): closed, as the Python server
                    // does; the answer is kept for the next connection.
                    Console.WriteLine("not a request: closed");
                    turn--;
                    continue;
                }
                long size = (long)BitConverter.ToUInt64(body, 0);
                string name = Path.GetFileName(System.Text.Encoding.UTF8.GetString(body, 8, body.Length - 8));
                if (answer != 'y')
                {
                    Reply(s, 2, reqId, (byte)(1 - accepted));
                    Console.WriteLine("denied " + name);
                    continue; // closed at once
                }
                Reply(s, 2, reqId, accepted);
                long got = 0;
                uint dataId = 0;
                bool first = true;
                ushort next = 0;
                bool ok = true;
                using (var f = File.Create(Path.Combine(dir, name)))
                {
                    while (true)
                    {
                        h = ReadExactly(s, 16);
                        uint id = BitConverter.ToUInt32(h, 0);
                        if (first) { dataId = id; first = false; }
                        if (BitConverter.ToUInt32(h, 4) != 3 || id != dataId || BitConverter.ToUInt16(h, 14) != next) { ok = false; break; }
                        unchecked { next++; }
                        byte[] data = ReadExactly(s, (int)BitConverter.ToUInt32(h, 8));
                        f.Write(data, 0, data.Length);
                        got += data.Length;
                        if (h[13] == 1) break;
                    }
                }
                ok = ok && got == size;
                Reply(s, 4, dataId, (byte)(ok ? 1 : 0));
                Console.WriteLine((ok ? "stored " : "failed ") + name + " " + got);
            }
        }
        return 0;
    }
}
